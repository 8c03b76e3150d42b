"""The labeler UI: the queue, writing demonstrations and dialogues, ranking K completions.

Every page is a plain form first; `static/labeling/labeling.js` adds drafts, keys and drag and
drop, htmx renews the lease. Views are thin: a form parses the post, one service writes (or a
selector reads), the view renders or redirects. A `LabelingError` from a service becomes a 4xx
page (or an htmx fragment) with its message; a task form refused by a service is shown again
with the message and what was posted, so nothing typed is lost.
"""
from functools import wraps
from urllib.parse import urlencode

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from labeling import evaluation_selectors, selectors
from labeling.agreement import project_agreement
from labeling.errors import Conflict, Forbidden, Invalid, LabelingError
from labeling.forms import DemonstrationForm, DialogueForm, RankingForm, SkipForm, now_ms
from labeling.models import Assignment
from labeling.parsing import row_id
from labeling.quality import RULES, LabelerQuality, labeler_quality
from labeling.services.demonstrations import demonstration_submit, dialogue_create
from labeling.services.quality import labeler_exclude, labeler_include
from labeling.services.queue import (
    assignment_renew,
    assignment_skip,
    demonstration_claim_next,
    ranking_claim_next,
)
from labeling.services.rankings import ranking_submit
from labeling.validation import MAX_TEXT_CHARS, MAX_TURNS

KIND = Assignment.Kind
PAGE = {KIND.RANKING: "labeling:ranking", KIND.DEMONSTRATION: "labeling:demonstration",
        KIND.COMPARISON: "labeling:comparison"}


def error_response(request, exc: LabelingError):
    template = "labeling/_error.html" if request.htmx else "labeling/error.html"
    return render(request, template, {"message": exc.message}, status=exc.status)


def labeling_errors(view):
    """A service's refusal is a 4xx with its message, never a 500."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except LabelingError as exc:
            return error_response(request, exc)

    return wrapper


def _home_after(project, kind):
    """Back to the queue with the button for the same kind of work in focus (Enter goes on)."""
    return redirect(f"{reverse('labeling:home')}?{urlencode({'next': f'{kind}:{project.slug}'})}")


CLAIM = {KIND.RANKING: ranking_claim_next, KIND.DEMONSTRATION: demonstration_claim_next}


def _go_on(request, project, kind, done: str):
    """After a submit or a skip: straight to the next task of the same kind in the project (the
    page links back to the queue), or the queue when none is left."""
    try:
        assignment = CLAIM[kind](labeler=request.user, project=project)
    except LabelingError:
        assignment = None  # e.g. the project closed meanwhile: the queue says what is open
    if assignment is None:
        messages.success(request, f"{done} That was the last one waiting for you here.")
        return _home_after(project, kind)
    messages.success(request, f"{done} Here is the next one.")
    return redirect(PAGE[kind], assignment.pk)


# ----------------------------------------------------------------------------- the queue


def _queue_context(request):
    kind, _, slug = request.GET.get("next", "").partition(":")
    queues = selectors.labeler_home(labeler=request.user)
    comparisons = evaluation_selectors.comparisons_waiting(labeler=request.user)
    for q in queues:  # the "compare replies" line shows only where some wait
        q.comparisons_waiting = comparisons.get(q.project.pk, 0)
    return {"queues": queues, "next_kind": kind, "next_project": slug}


@require_GET
def home(request):
    return render(request, "labeling/home.html", _queue_context(request))


@require_GET
def queue(request):
    """The queue as a fragment, for the dashboard (loaded by htmx)."""
    return render(request, "labeling/_queue.html", _queue_context(request))


def _project_posted(request):
    slug = request.POST.get("project", "")
    return selectors.project_by_slug(slug=slug) if slug else None


def _claim(request, claim, kind):
    project = _project_posted(request)
    assignment = claim(labeler=request.user, project=project)
    if assignment is None:
        what = {KIND.RANKING: "ranking task", KIND.DEMONSTRATION: "prompt to answer",
                KIND.COMPARISON: "comparison"}[kind]
        where = f" in {project.name}" if project else ""
        messages.info(request, f"No {what} is waiting for you{where} right now. Thank you!")
        return redirect("labeling:home")
    return redirect(PAGE[assignment.kind], assignment.pk)


@require_POST
@labeling_errors
def ranking_next(request):
    return _claim(request, ranking_claim_next, KIND.RANKING)


@require_POST
@labeling_errors
def demonstration_next(request):
    return _claim(request, demonstration_claim_next, KIND.DEMONSTRATION)


# ----------------------------------------------------------------------- shared task bits


def _own(request, assignment_id):
    """The labeler's own assignment (404 for anyone else's)."""
    return selectors.assignment_for(assignment_id=assignment_id, labeler=request.user)


def _task_context(assignment, **extra):
    lease_error = None
    if not assignment.is_live():
        lease_error = "Your time on this task ran out."
    return {
        "assignment": assignment,
        "project": assignment.prompt.project,
        "prompt": assignment.prompt,
        "lease_error": lease_error,
        "opened_at": now_ms(),
        "progress": selectors.task_progress(assignment=assignment),
        **extra,
    }


def _closed(request, assignment):
    """A task that is no longer open to this labeler: say why and offer what comes next."""
    return render(request, "labeling/closed.html", _task_context(assignment))


# ------------------------------------------------------------------------------- ranking


def _ranking_page(request, assignment, form, *, status=200, error=None):
    context = _task_context(assignment, form=form, error=error, k=len(form.completions))
    return render(request, "labeling/ranking.html", context, status=status)


@require_GET
@never_cache  # "back" after a submit asks again, and hears "already submitted"
@labeling_errors
def ranking(request, assignment_id):
    assignment = _own(request, assignment_id)
    if assignment.kind != KIND.RANKING:
        return redirect(PAGE[assignment.kind], assignment.pk)
    if not assignment.is_live():
        return _closed(request, assignment)
    form = RankingForm(completions=selectors.completions_for(assignment=assignment))
    return _ranking_page(request, assignment, form)


@require_POST
@labeling_errors
def ranking_post(request, assignment_id):
    assignment = _own(request, assignment_id)
    form = RankingForm(request.POST, completions=selectors.completions_for(assignment=assignment))
    if not form.is_valid():
        return _ranking_page(request, assignment, form, status=400,
                             error="Give every reply a rank (equal numbers are a tie).")
    try:
        ranking_submit(
            assignment_id=assignment.pk, labeler=request.user, order=form.order(),
            all_bad=form.cleaned_data["all_bad"], flags=form.flags(),
            comment=form.cleaned_data["comment"], time_spent_ms=form.time_spent(),
        )
    except LabelingError as exc:
        return _ranking_page(request, assignment, form, status=exc.status, error=exc.message)
    return _go_on(request, assignment.prompt.project, KIND.RANKING, "Ranking saved. Thank you!")


# ------------------------------------------------------------------------- demonstration


def _demonstration_page(request, assignment, form, *, status=200, error=None):
    context = _task_context(assignment, form=form, error=error, max_chars=MAX_TEXT_CHARS)
    return render(request, "labeling/demonstration.html", context, status=status)


@require_GET
@never_cache
@labeling_errors
def demonstration(request, assignment_id):
    assignment = _own(request, assignment_id)
    if assignment.kind != KIND.DEMONSTRATION:
        return redirect(PAGE[assignment.kind], assignment.pk)
    if not assignment.is_live():
        return _closed(request, assignment)
    form = DemonstrationForm(initial={"client_token": DialogueForm.new_token()})
    return _demonstration_page(request, assignment, form)


@require_POST
@labeling_errors
def demonstration_post(request, assignment_id):
    assignment = _own(request, assignment_id)
    form = DemonstrationForm(request.POST)
    if not form.is_valid():
        return _demonstration_page(request, assignment, form, status=400,
                                   error="The reply needs a look: see below.")
    try:
        demonstration_submit(
            assignment_id=assignment.pk, labeler=request.user, reply=form.cleaned_data["reply"],
            client_token=form.cleaned_data["client_token"], time_spent_ms=form.time_spent(),
        )
    except LabelingError as exc:
        return _demonstration_page(request, assignment, form, status=exc.status, error=exc.message)
    return _go_on(request, assignment.prompt.project, KIND.DEMONSTRATION,
                  "Demonstration saved. Thank you!")


# ------------------------------------------------------------------------------ dialogue


def _suggestion(project, labeler, completion_id):
    """A model suggestion to start from: the one asked for, or one the selector offers."""
    if completion_id is not None and row_id(completion_id) is None:
        return None
    return selectors.dialogue_suggestion(
        project=project, labeler=labeler,
        completion_id=row_id(completion_id) if completion_id else None,
    )


def _dialogue_page(request, project, form, *, texts=None, status=200, error=None, offer=None):
    suggestion_id = form["suggestion"].value()
    context = {
        "project": project, "form": form, "rows": form.rows(texts), "error": error,
        "opened_at": now_ms(), "offer": offer, "from_suggestion": bool(suggestion_id),
        "max_chars": MAX_TEXT_CHARS,
    }
    return render(request, "labeling/dialogue.html", context, status=status)


def _active_project(slug):
    project = selectors.project_by_slug(slug=slug)
    if not project.is_active:
        raise Conflict(f"The project {project.name} is closed.")
    return project


@require_GET
@labeling_errors
def dialogue(request, project_slug):
    project = _active_project(project_slug)
    wanted = request.GET.get("suggestion")
    suggestion = _suggestion(project, request.user, wanted) if wanted else None
    turns = None
    if suggestion is not None:
        turns = [t["content"] for t in suggestion.prompt.turns] + [suggestion.text]
    form = DialogueForm(turns=turns, initial={
        "client_token": DialogueForm.new_token(),
        "suggestion": suggestion.pk if suggestion else None,
    })
    offer = None if wanted else _suggestion(project, request.user, None)
    return _dialogue_page(request, project, form, offer=offer)


@require_POST
@labeling_errors
def dialogue_post(request, project_slug):
    project = _active_project(project_slug)
    form = DialogueForm(request.POST)
    if form.action in (DialogueForm.ADD, DialogueForm.REMOVE):
        return _dialogue_page(request, project, form, texts=form.edited_turns())
    if not form.is_valid():
        return _dialogue_page(request, project, form, status=400,
                              error="The form was incomplete; please try again.")
    try:
        dialogue_create(
            project=project, labeler=request.user, turns=form.turns(),
            client_token=form.cleaned_data["client_token"],
            suggestion_id=form.cleaned_data["suggestion"], time_spent_ms=form.time_spent(),
            live_suggestions=form.cleaned_data["live_suggestions"],
        )
    except LabelingError as exc:
        return _dialogue_page(request, project, form, status=exc.status, error=exc.message)
    messages.success(request, "Dialogue saved. Thank you!")
    return _home_after(project, "dialogue")


@require_POST
def preview(request):
    """htmx: the writing box's text (a reply, or a dialogue's turns) as the pages render it."""
    turns = request.POST.getlist("turn")[:MAX_TURNS]
    if turns:
        items = [("user" if i % 2 == 0 else "assistant", text[:MAX_TEXT_CHARS])
                 for i, text in enumerate(turns)]
    else:
        items = [("assistant", request.POST.get("reply", "")[:MAX_TEXT_CHARS])]
    return render(request, "labeling/_preview.html", {"items": items})


# -------------------------------------------------------------------------------- leases


@require_POST
@labeling_errors
def renew(request, assignment_id):
    """htmx, every minute while a task page is open: the lease fragment, or why it is gone.
    Without htmx (the "continue this task" button): back to the task, or the message."""
    assignment = _own(request, assignment_id)
    try:
        assignment = assignment_renew(assignment_id=assignment.pk, labeler=request.user)
    except LabelingError as exc:
        if request.htmx:
            return render(request, "labeling/_lease.html", {"lease_error": exc.message},
                          status=exc.status)
        raise
    if request.htmx:
        return render(request, "labeling/_lease.html", {"assignment": assignment})
    return redirect(PAGE[assignment.kind], assignment.pk)


@require_POST
@labeling_errors
def skip(request, assignment_id):
    assignment = _own(request, assignment_id)
    form = SkipForm(request.POST)
    if not form.is_valid():
        return error_response(request, _invalid(form))
    assignment_skip(assignment_id=assignment.pk, labeler=request.user,
                    reason=form.cleaned_data["reason"])
    return _go_on(request, assignment.prompt.project, assignment.kind,
                  "Skipped: you will not be shown this task again.")


# ---------------------------------------------------------------------------------- staff


@require_GET
@labeling_errors
def stats(request, project_slug):
    """Per-labeler counts and time, and how much labelers agree on shared tasks (staff)."""
    if not request.user.is_staff:
        raise Forbidden("Labeler statistics are for staff.")
    project = selectors.project_by_slug(slug=project_slug)
    agreement = project_agreement(project=project)
    taus = {a.labeler_id: a for a in agreement.labelers}
    quality = labeler_quality(project=project)
    rows = [
        (s, taus.get(s.labeler_id), quality.get(s.labeler_id, LabelerQuality(s.labeler_id)))
        for s in selectors.labeler_stats(project=project)
    ]
    context = {"project": project, "rows": rows, "agreement": agreement, "rules": RULES}
    return render(request, "labeling/stats.html", context)


@require_POST
@labeling_errors
def labeler_exclusion(request, project_slug):
    """Staff: leave a labeler's rankings out of snapshots from now on, or take them back."""
    if not request.user.is_staff:
        raise Forbidden("Excluding labelers is for staff.")
    project = selectors.project_by_slug(slug=project_slug)
    labeler_id = request.POST.get("labeler", "")
    if request.POST.get("action") == "include":
        labeler_include(project=project, labeler_id=labeler_id)
        messages.success(request, "Their rankings are used again by snapshots from now on.")
    else:
        labeler_exclude(project=project, labeler_id=labeler_id, created_by=request.user,
                        reason=request.POST.get("reason", ""))
        messages.success(request, "Their rankings are left out of snapshots from now on; "
                                  "runs already created keep the rows they trained on.")
    return redirect("labeling:stats", project.slug)


def _invalid(form) -> LabelingError:
    return Invalid(" ".join(str(e) for errors in form.errors.values() for e in errors))
