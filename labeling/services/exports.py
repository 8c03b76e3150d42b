"""Recording an export: the snapshot id, counts and digests of what `labeling.exports` yields."""
from datetime import datetime

from django.db import transaction

from labeling import exports
from labeling.models import ExportSnapshot, Project


@transaction.atomic
def export_snapshot_create(
    *, project: Project, as_of: datetime | None = None, created_by=None
) -> ExportSnapshot:
    """Count and digest every kind of record as of the moment. Idempotent per snapshot id:
    recording the same id again returns the first record (its digests are what a later read
    must reproduce)."""
    snap = exports.snapshot_for(project=project, as_of=as_of)
    existing = ExportSnapshot.objects.filter(snapshot_id=snap.id).first()
    if existing is not None:
        return existing
    counts, digests = {}, {}
    for kind in exports.KINDS:
        counts[kind], digests[kind] = exports.digest(
            exports.records(kind, project=project, as_of=snap.as_of)
        )
    snapshot = ExportSnapshot(
        project=project, snapshot_id=snap.id, as_of=snap.as_of, counts=counts, digests=digests,
        created_by=created_by,
    )
    snapshot.full_clean(validate_unique=False)
    snapshot.save()
    return snapshot
