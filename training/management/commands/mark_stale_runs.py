"""`manage.py mark_stale_runs [--timeout SECONDS] [--resume]`: runs whose worker stopped sending
heartbeats become failed ("worker vanished"), resumable from their last checkpoint; with
`--resume` they are queued again at once. Safe to run from cron every minute; the beat schedule
runs the same check (`training.recover_stale_runs`) every minute."""

from datetime import timedelta

from django.core.management.base import BaseCommand

from training.services.runs import runs_mark_stale, runs_recover_stale


class Command(BaseCommand):
    help = "Mark running runs without a recent heartbeat as failed (and optionally resume them)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--timeout",
            type=int,
            default=None,
            help="seconds without a heartbeat (default: TRAINING_HEARTBEAT_TIMEOUT)",
        )
        parser.add_argument("--resume", action="store_true", help="queue them again at once")

    def handle(self, *args, timeout, resume, **options):
        timeout = timedelta(seconds=timeout) if timeout is not None else None
        if resume:
            resumed = runs_recover_stale(timeout=timeout)
            for run_id in resumed:
                self.stdout.write(f"run #{run_id}: worker vanished; resumed")
            self.stdout.write(f"{len(resumed)} stale run(s) resumed")
            return
        marked = runs_mark_stale(timeout=timeout)
        for run_id in marked:
            self.stdout.write(f"run #{run_id}: worker vanished")
        self.stdout.write(f"{len(marked)} stale run(s)")
