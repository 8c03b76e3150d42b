"""The staff pages of training, mounted at /training/: a project's training page (the round's
counts, its rounds side by side with a "continue round" button, its model versions, start forms
for each kind of run), a run page (progress bar, curves
and log tail refreshed by htmx every 2 s, cancel and resume), and a model version's lineage.

Staff only: anyone else gets 403 and nothing is created. Views are thin: a selector reads, one
service writes; a service's refusal is shown as its message (never a traceback page).
"""

from functools import wraps

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from labeling.models import Project
from labeling.selectors import project_by_slug
from training import presets, selectors
from training.charts import run_charts
from training.errors import TrainingError
from training.first_steps import first_steps
from training.forms import parse_start, start_form
from training.jobs.kinds import run_kinds
from training.run_health import run_pace, run_warnings
from training.services.exports import exports_of, model_version_export
from training.services.rounds import round_continue
from training.services.runs import run_cancel, run_create, run_resume
from training.services.snapshots import minimum
from webapp.errors import ServiceError
from webapp.queueing import QueueUnavailable


def staff_only(view):
    """403 for a signed-in non-staff user (LoginRequiredMiddleware sends the others to log in);
    a service refusal becomes a page with its message and status."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("Training is for staff.")
        try:
            return view(request, *args, **kwargs)
        except ServiceError as exc:
            template = "training/_error.html" if request.htmx else "training/error.html"
            return render(request, template, {"message": exc.message}, status=exc.status)

    return wrapper


@require_GET
@staff_only
def index(request):
    projects = list(Project.objects.order_by("name"))
    now = timezone.now()
    return render(request, "training/index.html", {
        "projects": [(p, first_steps(project=p, now=now)) for p in projects],
        "runs": selectors.runs_recent(limit=20),
    })  # fmt: skip


def _project_page(request, project, *, forms=None, status=200):
    preset = request.GET.get("preset") or selectors.suggested_preset(project=project)
    forms = forms or {}
    counts = selectors.round_counts(project=project)
    # In the loop's order (`RunKind.order`): a base model first (pretraining, when none is
    # imported), then SFT, then a round's sample, reward model and PPO.
    start_forms = [forms.get(kind) or start_form(kind, project=project, preset=preset)
                   for kind in run_kinds()]  # fmt: skip
    needs = [{"noun": k.noun, "minimum": minimum(k.needs), "what": k.needs.replace("_", " ")}
             for k in run_kinds().values() if k.needs]  # fmt: skip
    return render(request, "training/project.html", {
        "project": project, "counts": counts, "forms": start_forms, "needs": needs,
        "preset": preset, "preset_titles": presets.TITLES,
        "versions": selectors.versions_for_project(project=project)[:50],
        "runs": selectors.runs_for_project(project=project),
        "rounds": selectors.rounds_for_project(project=project),
        "open_round": selectors.round_open(project=project),
    }, status=status)  # fmt: skip


@require_GET
@staff_only
def project(request, slug):
    return _project_page(request, project_by_slug(slug=slug))


@require_POST
@staff_only
def start(request, slug, kind):
    project = project_by_slug(slug=slug)
    if kind not in run_kinds():
        raise PermissionDenied("Unknown kind of run.")
    data = parse_start(request.POST)
    try:
        run = run_create(
            kind=kind, project=project, config=data["config"], preset=data["preset"],
            input_model=selectors.version_or_none(version_id=data["input_model_id"]),
            reward_model=selectors.version_or_none(version_id=data["reward_model_id"]),
            created_by=request.user, request_token=data["request_token"],
        )  # fmt: skip
    except TrainingError as exc:
        form = start_form(kind, project=project, preset=data["preset"], posted=request.POST,
                          error=exc.message)  # fmt: skip
        return _project_page(request, project, forms={kind: form}, status=exc.status)
    except QueueUnavailable as exc:
        messages.error(request, f"The run was recorded but not started: {exc}")
        return redirect("training:project", slug=project.slug)
    messages.success(request, f"Run #{run.pk} ({run.get_kind_display()}) is queued.")
    return redirect("training:run", run_id=run.pk)


@require_POST
@staff_only
def continue_round(request, slug):
    """Move the open round on (resuming its failed run), or open the next round."""
    project = project_by_slug(slug=slug)
    try:
        round_ = round_continue(project=project, by=request.user,
                                evaluate=request.POST.get("evaluate") == "on",
                                method=request.POST.get("method") or None,
                                chat_comparisons=request.POST.get("chat_comparisons") or None,
                                sample_mix=request.POST.get("sample_mix"))
    except QueueUnavailable as exc:
        messages.error(request, f"The round's run was recorded but not started: {exc}")
    else:
        messages.success(request, f"Round {round_.number}: {round_.get_stage_display().lower()}.")
    return redirect("training:project", slug=project.slug)


def _run_context(run):
    """What the live fragment shows (polled every 2 s while the run runs)."""
    curves = selectors.metric_points(run=run)
    return {"run": run, "charts": run_charts(run.kind, curves),
            "pace": run_pace(run, now=timezone.now()),
            "warnings": run_warnings(run, curves)}  # fmt: skip


@require_GET
@staff_only
def run(request, run_id):
    run = selectors.run_get(run_id=run_id)
    return render(request, "training/run.html", {
        **_run_context(run), "settings": presets.described(run.kind, run.config or {}),
        "snapshot": selectors.snapshot_counts(run=run), "labels": selectors.sample_labels(run),
    })  # fmt: skip


@require_GET
@staff_only
def run_live(request, run_id):
    """The part of the run page that changes while it runs (htmx polls it every 2 s; a finished
    run's fragment stops the polling)."""
    return render(
        request, "training/_run_live.html", _run_context(selectors.run_get(run_id=run_id))
    )


@require_POST
@staff_only
def cancel(request, run_id):
    run = run_cancel(run_id=run_id, by=request.user)
    messages.info(request, "Cancelled." if run.is_finished else "Asked to stop at the next step.")
    return redirect("training:run", run_id=run.pk)


@require_POST
@staff_only
def resume(request, run_id):
    try:
        run_resume(run_id=run_id, by=request.user)
    except QueueUnavailable as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Resumed: it continues from its last checkpoint.")
    return redirect("training:run", run_id=run_id)


@require_GET
@staff_only
def version(request, version_id):
    version = selectors.version_get(version_id=version_id)
    tree = selectors.lineage(version=version)
    return render(request, "training/version.html", {
        "version": version, "tree": tree, "runs": selectors.lineage_runs(tree),
        "exports": exports_of(version), "files": selectors.version_files(version=version),
    })  # fmt: skip


@require_POST
@staff_only
def export(request, version_id):
    version = selectors.version_get(version_id=version_id)
    done = model_version_export(version=version, format=request.POST.get("format", ""),
                                dtype=request.POST.get("dtype", "f16"))  # fmt: skip
    messages.success(request, f"Exported to {done.path}.")
    return redirect("training:version", version_id=version.pk)


@require_GET
@staff_only
def export_download(request, version_id, filename):
    """A GGUF export, downloaded (a Hugging Face export is a directory: its path is shown)."""
    version = selectors.version_get(version_id=version_id)
    for found in exports_of(version):
        if found.format == "gguf" and found.filename == filename:
            return FileResponse(found.path.open("rb"), as_attachment=True, filename=filename)
    raise Http404("No such export.")
