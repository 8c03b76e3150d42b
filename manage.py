#!/usr/bin/env python
"""Django's command-line utility for RLHF Loop."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:  # a bad environment variable: one line, no traceback
        sys.exit(f"error: {exc}")
