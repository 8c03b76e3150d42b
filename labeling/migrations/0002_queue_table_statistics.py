"""Planner statistics that keep up with the queue (PostgreSQL only; nothing on SQLite).

The claim query walks open tasks in queue order and stops at the first one the labeler may
take, but only if the planner knows there are many open tasks. By default autovacuum
re-analyzes a table after 10% of its rows change: a push of 10,000 open tasks into a table of
a million complete ones goes unnoticed, the planner keeps estimating "2 open tasks" and sorts
every open task (with its per-labeler checks) on each claim: 54 ms at 1,000 open tasks instead
of 0.1 ms, growing with the queue. Here the queue tables are re-analyzed after a fixed number
of changed rows, whatever their size.
"""
from django.db import migrations

QUEUE_TABLES = ("labeling_rankingtask", "labeling_prompt", "labeling_assignment")
SETTINGS = "autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 1000"


def _alter(schema_editor, clause: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in QUEUE_TABLES:
        schema_editor.execute(f"ALTER TABLE {table} {clause}")


def analyze_often(apps, schema_editor):
    _alter(schema_editor, f"SET ({SETTINGS})")


def analyze_by_default(apps, schema_editor):
    _alter(schema_editor, "RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold)")


class Migration(migrations.Migration):
    dependencies = [("labeling", "0001_initial")]

    operations = [migrations.RunPython(analyze_often, analyze_by_default)]
