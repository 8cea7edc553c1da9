"""Migration 0013 encrypts the webhook secrets stored in plaintext, and migrating back decrypts them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from diagnosis import sealed

BEFORE = [("diagnosis", "0012_api_client_scopes_described")]
AFTER = [("diagnosis", "0013_api_client_webhook_secret_sealed")]
SECRET = "whsec_" + "p" * 43


def migrate(targets: list[tuple[str, str]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()  # the applied set changed: the next project_state must see it
    return executor


def table() -> list[tuple[object, ...]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM diagnosis_apiclient ORDER BY name")
        return cursor.fetchall()


@pytest.fixture
def at_0012(transactional_db: None) -> Iterator[MigrationExecutor]:
    """The database as 0012 left it; migrated to the latest state again afterwards, for the other tests."""
    executor = migrate(BEFORE)
    yield executor
    migrate(executor.loader.graph.leaf_nodes())


def test_the_migration_seals_plaintext_secrets_and_its_reverse_restores_them(at_0012) -> None:
    old_api_client = at_0012.loader.project_state(BEFORE).apps.get_model("diagnosis", "ApiClient")
    for name, url, secret in [("ehr", "https://ehr.example.org/in", SECRET), ("lab", "", "")]:
        old_api_client.objects.create(
            name=name,
            scopes=["submit"],
            token_prefix=f"mpx_{name}",
            token_sha256="0" * 64,
            webhook_url=url,
            webhook_secret=secret,
        )

    executor = migrate(AFTER)
    assert SECRET not in repr(table())
    assert "p" * 43 not in repr(table())
    api_client = executor.loader.project_state(AFTER).apps.get_model("diagnosis", "ApiClient")
    stored = dict(api_client.objects.values_list("name", "webhook_secret_sealed"))
    assert stored["lab"] == ""
    assert sealed.unseal(stored["ehr"]) == SECRET

    migrate(BEFORE)
    restored = dict(old_api_client.objects.values_list("name", "webhook_secret"))
    assert restored == {"ehr": SECRET, "lab": ""}


def test_migrating_back_stops_with_the_fix_named_when_a_secret_no_longer_decrypts(at_0012, settings) -> None:
    old_api_client = at_0012.loader.project_state(BEFORE).apps.get_model("diagnosis", "ApiClient")
    old_api_client.objects.create(
        name="ehr", scopes=["submit"], token_prefix="mpx_ehr", token_sha256="0" * 64, webhook_secret=SECRET
    )
    migrate(AFTER)
    settings.SECRET_KEY = "rotated-" + "k" * 50
    with pytest.raises(RuntimeError, match=r"'ehr' cannot be decrypted.*set SECRET_KEY_FALLBACKS to the old key"):
        migrate(BEFORE)
    assert SECRET not in repr(table())  # nothing half-done
