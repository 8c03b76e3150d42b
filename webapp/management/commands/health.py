"""`manage.py health`: whether the database, Redis and a worker are reachable; exit 1 if not."""
from django.core.management.base import BaseCommand, CommandError

from webapp.health import system_health


class Command(BaseCommand):
    help = "Check the database, Redis and the Celery workers, and list the queues they serve."

    def handle(self, *args, **options):
        checks, workers = system_health()
        for check in checks:
            mark = self.style.SUCCESS("ok  ") if check.ok else self.style.ERROR("FAIL")
            self.stdout.write(f"{mark} {check.name}: {check.detail}")
        for worker in workers:
            self.stdout.write(f"     worker {worker.name} serves: {', '.join(worker.queues)}")
        failed = [c.name for c in checks if not c.ok]
        if failed:
            raise CommandError(f"not healthy: {', '.join(failed)}")
