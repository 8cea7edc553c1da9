from __future__ import annotations

from django.core.management import call_command
from django.db import migrations

# The table of the default cache (CACHE_URL=db://, see settings), where the API's rate limits count. Made whatever
# CACHE_URL says now, so that switching to it later needs no extra step.
TABLE = "mpox_cache"


def _create(apps: object, schema_editor: object) -> None:
    call_command("createcachetable", TABLE, database=schema_editor.connection.alias, verbosity=0)  # type: ignore[attr-defined]


def _drop(apps: object, schema_editor: object) -> None:
    schema_editor.execute(f"DROP TABLE IF EXISTS {TABLE}")  # type: ignore[attr-defined]


class Migration(migrations.Migration):
    dependencies = [("diagnosis", "0009_audit_no_truncate")]

    operations = [migrations.RunPython(_create, _drop)]
