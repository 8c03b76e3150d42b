"""What `training/` reads: a project's labels as of a moment, as plain dicts (no Django objects).

A dataset is named by a snapshot id, `<project slug>.<project id>@<as_of UTC>`, e.g.
`python-stdlib.1@20250101T120000.000000Z`. Labels are never updated after they are written, so
"every row created up to `as_of`" is the same set whenever it is read again; `snapshot_resolve`
turns an id back into (project, as_of) and the generators below re-create the data. A recorded
`ExportSnapshot` (see `labeling.services.exports`) keeps counts and sha256 digests to prove it.

    from labeling import exports
    snap = exports.snapshot_for(project=project)          # as of now
    for record in exports.sft_records(project=project, as_of=snap.as_of): ...
    for record in exports.comparisons(project=project, as_of=snap.as_of): ...
    for group in exports.ranking_groups(project=project, as_of=snap.as_of): ...

Every generator yields records in id order, reading in chunks (memory stays flat).
"""
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Exists, OuterRef
from django.utils import timezone

from labeling.errors import Invalid, NotFound
from labeling.models import Demonstration, Project, Ranking, RankingTask, TaskCompletion
from labeling.parsing import moment_in_range

CHUNK = 500
KINDS = ("sft", "comparisons", "rankings")
_STAMP = "%Y%m%dT%H%M%S.%fZ"


@dataclass(frozen=True)
class LabelsAsOf:
    """A project's labels as of a moment and the id that names them. A run's
    `training.services.snapshots.DatasetSnapshot` (its rows) and an `ExportSnapshot` (an export's
    digests) both carry this id."""

    id: str
    project_id: int
    as_of: datetime


def snapshot_for(*, project: Project, as_of: datetime | None = None) -> LabelsAsOf:
    """The snapshot of a project as of a moment (default now). A later moment is refused: its
    rows would change as labels arrive while its id stayed the same."""
    as_of = (timezone.now() if as_of is None else moment_in_range(as_of)).astimezone(UTC)
    return LabelsAsOf(f"{project.slug}.{project.pk}@{as_of.strftime(_STAMP)}", project.pk, as_of)


def snapshot_resolve(snapshot_id: str) -> tuple[Project, datetime]:
    """The project and moment a snapshot id names (NotFound/Invalid if it names none)."""
    try:
        head, stamp = snapshot_id.rsplit("@", 1)
        project_id = int(head.rsplit(".", 1)[1])
        as_of = datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
    except (ValueError, IndexError):
        raise Invalid(f"Not a snapshot id: {snapshot_id!r}.") from None
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        raise NotFound(f"The project of snapshot {snapshot_id} no longer exists.")
    return project, as_of


def sft_records(*, project: Project, as_of: datetime) -> Iterator[dict]:
    """{"messages": [...], ...} per demonstration, as TRL's SFTTrainer reads conversations."""
    qs = Demonstration.objects.filter(prompt__project=project, created_at__lte=as_of)
    for demo in _chunks(qs.only("id", "prompt_id", "author_id", "turns", "is_dialogue")):
        yield {
            "messages": demo.turns,
            "demonstration_id": demo.pk,
            "prompt_id": demo.prompt_id,
            "author_id": demo.author_id,
            "is_dialogue": demo.is_dialogue,
        }


def comparisons(*, project: Project, as_of: datetime) -> Iterator[dict]:
    """Every (better, worse) pair each ranking implies (ties imply none), in TRL's
    conversational preference format: prompt messages, chosen and rejected assistant turns."""
    for group in ranking_groups(project=project, as_of=as_of):
        texts = {c["id"]: c["text"] for c in group["completions"]}
        for ranking in group["rankings"]:
            order = ranking["order"]
            for i, better in enumerate(order):
                for worse in order[i + 1:]:
                    for chosen in better:
                        for rejected in worse:
                            yield {
                                "prompt": group["prompt"],
                                "chosen": [{"role": "assistant", "content": texts[chosen]}],
                                "rejected": [{"role": "assistant", "content": texts[rejected]}],
                                "chosen_id": chosen,
                                "rejected_id": rejected,
                                "task_id": group["task_id"],
                                "ranking_id": ranking["ranking_id"],
                                "labeler_id": ranking["labeler_id"],
                            }


def ranking_groups(*, project: Project, as_of: datetime) -> Iterator[dict]:
    """Per ranked task: the prompt turns, its K completions (in task position order) and every
    labeler's order, best to worst in groups of tied ids. The reward model keeps a task's
    C(K,2) pairs together; agreement statistics compare the labelers' orders."""
    ranked = Ranking.objects.filter(task=OuterRef("pk"), created_at__lte=as_of)
    tasks = (
        RankingTask.objects.filter(Exists(ranked), project=project)
        .select_related("prompt")
        .only("id", "prompt__id", "prompt__turns")
    )
    for chunk in _chunked(tasks):
        ids = [t.pk for t in chunk]
        items: dict[int, list[dict]] = {}
        for row in (
            TaskCompletion.objects.filter(task_id__in=ids)
            .order_by("task_id", "position")
            .values("task_id", "completion_id", "completion__text", "completion__model_label",
                    "completion__model_version_id")
        ):
            items.setdefault(row["task_id"], []).append({
                "id": row["completion_id"],
                "text": row["completion__text"],
                "model_label": row["completion__model_label"],
                "model_version_id": row["completion__model_version_id"],
            })
        rankings: dict[int, list[dict]] = {}
        for r in (
            Ranking.objects.filter(task_id__in=ids, created_at__lte=as_of)
            .order_by("id")
            .values("id", "task_id", "labeler_id", "order", "all_bad", "flags", "time_spent_ms")
        ):
            rankings.setdefault(r["task_id"], []).append({
                "ranking_id": r["id"], "labeler_id": r["labeler_id"], "order": r["order"],
                "all_bad": r["all_bad"], "flags": r["flags"], "time_spent_ms": r["time_spent_ms"],
            })
        for task in chunk:
            yield {
                "task_id": task.pk,
                "prompt_id": task.prompt.pk,
                "prompt": task.prompt.turns,
                "completions": items.get(task.pk, []),
                "rankings": rankings[task.pk],
            }


def records(kind: str, *, project: Project, as_of: datetime) -> Iterator[dict]:
    if kind not in KINDS:
        raise Invalid(f"Export kind is one of {', '.join(KINDS)}.")
    generator = {"sft": sft_records, "comparisons": comparisons, "rankings": ranking_groups}[kind]
    return generator(project=project, as_of=as_of)


def jsonl_lines(items: Iterable[dict]) -> Iterator[str]:
    """Canonical JSONL (sorted keys, UTF-8 text): equal data gives equal bytes and digests."""
    for item in items:
        yield json.dumps(item, ensure_ascii=False, sort_keys=True) + "\n"


def digest(items: Iterable[dict]) -> tuple[int, str]:
    sha, n = hashlib.sha256(), 0
    for line in jsonl_lines(items):
        sha.update(line.encode())
        n += 1
    return n, sha.hexdigest()


def _chunked(qs) -> Iterator[list]:
    last = 0
    while True:
        chunk = list(qs.filter(pk__gt=last).order_by("pk")[:CHUNK])
        if not chunk:
            return
        yield chunk
        last = chunk[-1].pk


def _chunks(qs) -> Iterator:
    for chunk in _chunked(qs):
        yield from chunk
