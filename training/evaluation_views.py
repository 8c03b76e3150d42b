"""Staff pages of human evaluation, under /training/projects/<slug>/: start a blind comparison of
model versions on the evaluation prompts, follow its batches, and read the leaderboard (a table
and a chart of Bradley-Terry ratings with bootstrap 95% intervals, the win-rate matrix, Likert
means, position bias and labeler agreement), also as CSV and JSON. Thin views: the selectors
read, `comparison_start` writes, `labeling.leaderboard` computes on each request (fast enough to
be live: `bench/bench_leaderboard.py`)."""

import csv
import io
import uuid

from django.contrib import messages
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from labeling import evaluation_selectors
from labeling.evaluation_models import REPLY_FLAGS
from labeling.leaderboard import leaderboard
from labeling.selectors import project_by_slug
from labeling.services.comparisons import evaluation_prompts
from training.charts import svg_interval_chart
from training.errors import Invalid
from training.jobs.kinds import run_kind
from training.models import ModelVersion
from training.selectors import versions_for_project
from training.services.evaluation import comparison_start
from training.views import staff_only
from webapp.queueing import QueueUnavailable

BOOTSTRAP_ROUNDS = 200


def _board(project):
    votes, names = evaluation_selectors.vote_arrays(project=project)
    return leaderboard(votes, bootstrap=BOOTSTRAP_ROUNDS, names=names,
                       flag_names=tuple(REPLY_FLAGS))


def _evaluation_page(request, project, *, status=200, posted=None):
    candidates = versions_for_project(project=project, kinds=run_kind("sample").takes)[:50]
    chosen = set(posted.getlist("versions")) if posted is not None else set()
    return render(request, "training/evaluation.html", {
        "project": project, "versions": candidates, "chosen": chosen,
        "evaluation_prompts": evaluation_prompts(project).count(),
        "batches": evaluation_selectors.batch_progress(project=project),
        "votes_needed": (posted or {}).get("votes_needed") or project.overlap,
        "request_token": uuid.uuid4().hex,
    }, status=status)  # fmt: skip


@require_GET
@staff_only
def evaluation(request, slug):
    return _evaluation_page(request, project_by_slug(slug=slug))


@require_POST
@staff_only
def compare_start(request, slug):
    project = project_by_slug(slug=slug)
    ids = request.POST.getlist("versions")
    if not all(i.isdigit() for i in ids):
        raise Invalid("Choose model versions from the list.")
    found = ModelVersion.objects.in_bulk([int(i) for i in ids])
    versions = [found[int(i)] for i in ids if int(i) in found]
    if len(versions) != len(ids):
        raise Invalid("One of the chosen model versions does not exist.")
    votes_needed = request.POST.get("votes_needed", "").strip()
    if votes_needed and not votes_needed.isdigit():
        raise Invalid("Votes per pair is a whole number.")
    config = {name: request.POST[name] for name in ("max_new_tokens", "temperature")
              if request.POST.get(name, "").strip()}  # fmt: skip
    try:
        batch = comparison_start(
            project=project, versions=versions, config=config,
            votes_needed=int(votes_needed) if votes_needed else None, created_by=request.user,
            request_token=(request.POST.get("request_token") or "")[:64] or None,
        )  # fmt: skip
    except QueueUnavailable as exc:
        messages.error(request, f"The comparison was recorded but not queued: {exc}")
        return redirect("training:evaluation", slug=project.slug)
    messages.success(request, f"Comparison #{batch.pk} started: the workers write one reply per "
                              "version and evaluation prompt, then labelers vote.")
    return redirect("training:evaluation", slug=project.slug)


@require_GET
@staff_only
def leaderboard_page(request, slug):
    project = project_by_slug(slug=slug)
    board = _board(project)
    rows = board.rows() if board else []
    chart = svg_interval_chart(
        "Rating (Elo scale) with 95% interval",
        [(r["name"], r["rating"], r["rating_low"] or r["rating"], r["rating_high"] or r["rating"])
         for r in rows],
    )  # fmt: skip
    matrix = board.as_dict()["win_rate"] if board else None
    names = {r["version_id"]: r["name"] for r in rows}
    return render(request, "training/leaderboard.html", {
        "project": project, "board": board, "rows": rows, "chart": chart,
        "matrix": [(names[v], line) for v, line in zip(matrix["versions"], matrix["matrix"],
                                                        strict=True)] if matrix else [],
        "matrix_names": [names[v] for v in matrix["versions"]] if matrix else [],
        "summary": board.as_dict() if board else None,
        "flag_labels": list(REPLY_FLAGS.values()),
    })  # fmt: skip


@require_GET
@staff_only
def leaderboard_json(request, slug):
    project = project_by_slug(slug=slug)
    board = _board(project)
    return JsonResponse({"project": project.slug, **(board.as_dict() if board else {"votes": 0})})


CSV_COLUMNS = ("rank", "version_id", "name", "rating", "rating_low", "rating_high", "strength",
               "games", "wins", "win_share")


@require_GET
@staff_only
def leaderboard_csv(request, slug):
    project = project_by_slug(slug=slug)
    board = _board(project)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*CSV_COLUMNS, "likert_mean", "likert_low", "likert_high", "likert_n",
                     *(f"share_{name}" for name in REPLY_FLAGS)])  # fmt: skip
    for row in board.rows() if board else []:
        likert = row["likert"]
        writer.writerow([*(row[c] for c in CSV_COLUMNS), likert["value"], likert["low"],
                         likert["high"], likert["n"], *row["flags"].values()])  # fmt: skip
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-leaderboard.csv"'
    return response
