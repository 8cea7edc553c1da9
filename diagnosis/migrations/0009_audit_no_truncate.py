from __future__ import annotations

from django.db import migrations

# UPDATE and DELETE are refused row by row (0007); TRUNCATE skips row triggers, so it gets its own statement trigger.
_PG_NO_TRUNCATE = """
CREATE TRIGGER diagnosis_auditentry_no_truncate
    BEFORE TRUNCATE ON diagnosis_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION diagnosis_auditentry_append_only();
"""
_PG_NO_TRUNCATE_REVERSE = "DROP TRIGGER IF EXISTS diagnosis_auditentry_no_truncate ON diagnosis_auditentry;"


def _no_truncate(apps: object, schema_editor: object) -> None:
    if schema_editor.connection.vendor == "postgresql":  # type: ignore[attr-defined]
        schema_editor.execute(_PG_NO_TRUNCATE)  # type: ignore[attr-defined]


def _no_truncate_reverse(apps: object, schema_editor: object) -> None:
    if schema_editor.connection.vendor == "postgresql":  # type: ignore[attr-defined]
        schema_editor.execute(_PG_NO_TRUNCATE_REVERSE)  # type: ignore[attr-defined]


class Migration(migrations.Migration):
    dependencies = [("diagnosis", "0008_webhooks")]

    operations = [migrations.RunPython(_no_truncate, _no_truncate_reverse)]
