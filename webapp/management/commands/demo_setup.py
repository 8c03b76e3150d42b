"""`manage.py demo_setup`: the demo admin, the demo labeler and the demo project.

Idempotent: users that exist are left alone (their passwords were printed when they were made),
and the demo project is loaded only once.
"""
import secrets

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

DEMO_USERS = (
    # username, is_staff
    ("admin", True),
    ("labeler", False),
)


class Command(BaseCommand):
    help = "Create the demo admin and labeler (passwords printed once) and the demo project."

    def handle(self, *args, **options):
        User = get_user_model()
        for username, is_staff in DEMO_USERS:
            with transaction.atomic():
                if User.objects.filter(username=username).exists():
                    self.stdout.write(f"user {username!r} exists (password printed when made)")
                    continue
                password = secrets.token_urlsafe(9)
                User.objects.create_user(
                    username, password=password, is_staff=is_staff, is_superuser=is_staff
                )
            self.stdout.write(
                self.style.SUCCESS(f"created user {username!r} with password {password}")
            )
        call_command("load_demo_project", author="admin", stdout=self.stdout)
