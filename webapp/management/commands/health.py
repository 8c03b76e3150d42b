"""`manage.py health`: whether the database, Redis and a worker are reachable; exit 1 if not.
The inference worker (the live model) is reported too, as a warning when it is down."""
from django.core.management.base import BaseCommand, CommandError

from webapp.health import system_health


class Command(BaseCommand):
    help = "Check the database, Redis and the Celery workers, and list the queues they serve."

    def handle(self, *args, **options):
        checks, workers = system_health()
        for check in checks:
            if check.ok:
                mark = self.style.SUCCESS("ok  ")
            else:
                mark = self.style.ERROR("FAIL") if check.required else self.style.WARNING("WARN")
            self.stdout.write(f"{mark} {check.name}: {check.detail}")
        for worker in workers:
            self.stdout.write(f"     worker {worker.name} serves: {', '.join(worker.queues)}")
        failed = [c.name for c in checks if c.required and not c.ok]
        if failed:
            raise CommandError(f"not healthy: {', '.join(failed)}")
