"""Helpers for the labeler page tests (import as `from labeler_pages import ...`)."""
from datetime import timedelta

from django.utils import timezone

from labeling.models import Assignment
from labeling.selectors import completions_for
from labeling.services.queue import ranking_claim_next

XSS = "<script>alert('x')</script>"


def claim(labeler, project):
    return ranking_claim_next(labeler=labeler, project=project)


def rank_post(assignment, ranks, **extra):
    """The no-JS form: one rank select per completion (equal numbers are a tie)."""
    ids = [c.pk for c in completions_for(assignment=assignment)]
    data = {f"rank_{cid}": str(r) for cid, r in zip(ids, ranks, strict=True)}
    return ids, {**data, **extra}


def expire(assignment):
    Assignment.objects.filter(pk=assignment.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
