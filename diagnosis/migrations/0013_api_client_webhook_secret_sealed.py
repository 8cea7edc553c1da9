from __future__ import annotations

from typing import Any

from django.db import migrations, models

from diagnosis import sealed

# Webhook secrets were stored in plaintext, so a database dump or backup gave away every partner's signing key. They
# move to a new column, encrypted under a key derived from SECRET_KEY, and the plaintext column goes. A new name
# rather than the old column widened: nothing can read the encrypted value as if it were the secret.


def seal_secrets(apps: Any, schema_editor: Any) -> None:
    """Encrypt every client's webhook secret into the new column."""
    api_client = apps.get_model("diagnosis", "ApiClient")
    for client in api_client.objects.exclude(webhook_secret=""):
        client.webhook_secret_sealed = sealed.seal(client.webhook_secret)
        client.save(update_fields=["webhook_secret_sealed"])


def unseal_secrets(apps: Any, schema_editor: Any) -> None:
    """Backwards: the secrets in plaintext again; stops, changing nothing, if one no longer opens."""
    api_client = apps.get_model("diagnosis", "ApiClient")
    for client in api_client.objects.exclude(webhook_secret_sealed=""):
        try:
            client.webhook_secret = sealed.unseal(client.webhook_secret_sealed)
        except sealed.UnsealError as exc:
            raise RuntimeError(
                f"the webhook secret of API client {client.name!r} cannot be decrypted: {exc}; set "
                "SECRET_KEY_FALLBACKS to the old key, or give the client a new secret before migrating back"
            ) from None
        client.save(update_fields=["webhook_secret"])


class Migration(migrations.Migration):
    dependencies = [("diagnosis", "0012_api_client_scopes_described")]

    operations = [
        migrations.AddField(
            model_name="apiclient",
            name="webhook_secret_sealed",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.RunPython(seal_secrets, unseal_secrets),
        migrations.RemoveField(model_name="apiclient", name="webhook_secret"),
    ]
