"""`manage.py expire_leases`: mark every lease past its time as expired, so the assignment table
and the admin show only live leases as active. Claims already ignore stale leases; this is the
tidy-up. Safe to run from cron every minute (the Celery beat schedule runs the same service)."""
from django.core.management.base import BaseCommand

from labeling.services.queue import assignments_expire


class Command(BaseCommand):
    help = "Mark leases past their time as expired (idempotent; for cron)."

    def handle(self, *args, **options):
        self.stdout.write(f"{assignments_expire()} lease(s) expired")
