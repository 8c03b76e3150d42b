"""Projects: created by staff (admin, API, `load_demo_project`)."""
from django.db import transaction
from django.utils.text import slugify

from labeling.errors import Invalid
from labeling.models import Project


@transaction.atomic
def project_create(
    *,
    name: str,
    slug: str = "",
    guidelines: str = "",
    k: int = 4,
    overlap: int = 1,
    lease_seconds: int = 600,
    **more,
) -> Project:
    """`more`: guidelines per kind of task (`KIND_GUIDELINES`) and quality-control settings
    (`QUALITY`); what is not given keeps its default."""
    unknown = set(more) - set(KIND_GUIDELINES) - set(QUALITY)
    if unknown:
        raise Invalid(f"Not a project setting: {', '.join(sorted(unknown))}.")
    project = Project(
        name=name, slug=slug or slugify(name), guidelines=guidelines, k=k, overlap=overlap,
        lease_seconds=lease_seconds, **more,
    )
    _clean(project)
    project.save()
    return project


@transaction.atomic
def project_get_or_create(*, name: str, slug: str, **fields) -> tuple[Project, bool]:
    """Idempotent setup: an existing project with this slug is returned unchanged."""
    project = Project.objects.filter(slug=slug).first()
    if project is not None:
        return project, False
    return project_create(name=name, slug=slug, **fields), True


def _clean(project: Project) -> None:
    from django.core.exceptions import ValidationError

    try:
        project.full_clean()
    except ValidationError as exc:
        problems = (f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
        raise Invalid("; ".join(problems)) from exc


KIND_GUIDELINES = ("ranking_guidelines", "writing_guidelines", "dialogue_guidelines",
                   "comparison_guidelines")
QUALITY = ("gold_rate", "gold_min_accuracy", "sft_include_unedited")
EDITABLE = ("name", "slug", "guidelines", *KIND_GUIDELINES, "k", "overlap", "lease_seconds",
            "is_active", *QUALITY)


@transaction.atomic
def project_update(*, project: Project, **fields) -> Project:
    """Change a project's settings. New tasks copy the new overlap; existing tasks keep theirs."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise Invalid(f"Not editable: {', '.join(sorted(unknown))}.")
    changed = [name for name, value in fields.items() if getattr(project, name) != value]
    for name in changed:
        setattr(project, name, fields[name])
    _clean(project)
    if changed:
        project.save(update_fields=changed)
    return project
