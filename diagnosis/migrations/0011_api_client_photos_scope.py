from __future__ import annotations

from typing import Any

from django.db import migrations, models

# The `photos` scope (lesion photos and heatmap overlays) splits off `read`. Clients that had `read` could download
# photos before, so they get `photos` here and deployed integrations keep working; new clients get it only when given.
SCOPE, GRANTED_WITH = "photos", "read"


def grant_photos(apps: Any, schema_editor: Any) -> None:
    """Give `photos` to every API client that has `read`."""
    api_client = apps.get_model("diagnosis", "ApiClient")
    for client in api_client.objects.all():
        scopes = list(client.scopes or [])
        if GRANTED_WITH in scopes and SCOPE not in scopes:
            client.scopes = sorted({*scopes, SCOPE})
            client.save(update_fields=["scopes"])


def revoke_photos(apps: Any, schema_editor: Any) -> None:
    """Backwards: the scope no longer exists, so no client keeps it."""
    api_client = apps.get_model("diagnosis", "ApiClient")
    for client in api_client.objects.all():
        scopes = list(client.scopes or [])
        if SCOPE in scopes:
            client.scopes = [scope for scope in scopes if scope != SCOPE]
            client.save(update_fields=["scopes"])


class Migration(migrations.Migration):
    dependencies = [("diagnosis", "0010_cache_table")]

    operations = [
        migrations.AlterField(
            model_name="apiclient",
            name="scopes",
            field=models.JSONField(
                default=list,
                help_text="Any of submit, read, lab, stats, photos (may download lesion photos and heatmap overlays; "
                "needs read too)",
            ),
        ),
        migrations.RunPython(grant_photos, revoke_photos),
    ]
