"""Export a project's labels as of a moment: sft.jsonl, comparisons.jsonl, rankings.jsonl and a
manifest.json naming the snapshot (what training/ records as its dataset).

    manage.py export_project --project python-stdlib --out exports/ [--as-of 2025-01-01T12:00Z]
    manage.py export_project --snapshot python-stdlib.1@20250101T120000.000000Z --out exports/
"""
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labeling import exports, selectors
from labeling.errors import LabelingError
from labeling.parsing import as_of_moment
from labeling.services.exports import export_snapshot_create


class Command(BaseCommand):
    help = "Write a project's SFT records, comparisons and rankings as JSONL, as of a moment."

    def add_arguments(self, parser):
        parser.add_argument("--project", help="project slug")
        parser.add_argument("--snapshot", help="re-export an earlier snapshot id")
        parser.add_argument("--as-of", help="ISO datetime (UTC unless it says); default now")
        parser.add_argument("--out", type=Path, required=True, help="a folder")

    def handle(self, *args, project, snapshot, as_of, out, **options):
        try:
            if snapshot:
                project_obj, moment = exports.snapshot_resolve(snapshot)
            elif project:
                project_obj, moment = selectors.project_by_slug(slug=project), None
                if as_of:
                    moment = as_of_moment(as_of, field="--as-of", naive_is_utc=True)
            else:
                raise CommandError("Name a --project or a --snapshot.")
            record = export_snapshot_create(project=project_obj, as_of=moment)
        except LabelingError as exc:
            raise CommandError(exc.message) from None
        out.mkdir(parents=True, exist_ok=True)
        for kind in exports.KINDS:
            with (out / f"{kind}.jsonl").open("w", encoding="utf-8") as fp:
                fp.writelines(exports.jsonl_lines(
                    exports.records(kind, project=project_obj, as_of=record.as_of)
                ))
        manifest = {
            "snapshot_id": record.snapshot_id, "project": project_obj.slug,
            "as_of": record.as_of.isoformat(), "counts": record.counts, "sha256": record.digests,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        self.stdout.write(f"{record.snapshot_id}: {record.counts} -> {out}")
