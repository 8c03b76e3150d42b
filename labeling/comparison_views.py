"""The labeler's comparison page: two replies side by side, A on the left and B on the right,
with nothing that names a model until the vote is in. Thin views as in `labeling.views`: a form
parses, `vote_submit` writes; after the vote the message says which version wrote which reply.
"""
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from labeling import evaluation_selectors
from labeling.comparison_forms import LIKERT_CHOICES, VoteForm
from labeling.errors import LabelingError
from labeling.models import Assignment
from labeling.services.comparisons import vote_submit
from labeling.services.queue import comparison_claim_next
from labeling.views import PAGE, _claim, _closed, _home_after, _own, _task_context, labeling_errors

KIND = Assignment.Kind


@require_POST
@labeling_errors
def comparison_next(request):
    return _claim(request, comparison_claim_next, KIND.COMPARISON)


def _page(request, assignment, form, *, status=200, error=None):
    reply_a, reply_b = evaluation_selectors.comparison_sides(assignment=assignment)
    context = _task_context(assignment, form=form, error=error, outcomes=form.outcomes(),
                            sides=form.sides(reply_a, reply_b), likert_choices=LIKERT_CHOICES)
    return render(request, "labeling/comparison.html", context, status=status)


@require_GET
@labeling_errors
def comparison(request, assignment_id):
    assignment = _own(request, assignment_id)
    if assignment.kind != KIND.COMPARISON:
        return redirect(PAGE[assignment.kind], assignment.pk)
    if not assignment.is_live():
        return _closed(request, assignment)
    return _page(request, assignment, VoteForm())


@require_POST
@labeling_errors
def comparison_post(request, assignment_id):
    assignment = _own(request, assignment_id)
    if assignment.kind != KIND.COMPARISON:
        return redirect(PAGE[assignment.kind], assignment.pk)
    form = VoteForm(request.POST)
    if not form.is_valid():
        return _page(request, assignment, form, status=400,
                     error="Say which reply is better (or tie, or both bad).")
    try:
        vote = vote_submit(assignment_id=assignment.pk, labeler=request.user, **form.vote())
    except LabelingError as exc:
        return _page(request, assignment, form, status=exc.status, error=exc.message)
    names = (vote.completion_a.model_label or f"version {vote.version_a_id}",
             vote.completion_b.model_label or f"version {vote.version_b_id}")
    messages.success(request, f"Vote saved. Thank you! Reply A was written by {names[0]}, "
                              f"reply B by {names[1]}.")
    return _home_after(assignment.prompt.project, KIND.COMPARISON)
