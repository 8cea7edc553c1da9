from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command, load_command_class

from diagnosis.api_auth import token_hash
from diagnosis.models import ApiClient

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("create_api_client", *args, stdout=out)
    return out.getvalue().strip()


def test_it_prints_the_token_once_and_stores_only_its_hash() -> None:
    token = _run("ehr", "--scope", "submit", "--scope", "read")
    client = ApiClient.objects.get(name="ehr")
    assert client.scopes == ["read", "submit"]
    assert client.token_sha256 == token_hash(token)
    assert token.startswith(client.token_prefix)
    assert token not in (client.token_prefix, client.token_sha256)


def test_it_refuses_a_duplicate_name_and_a_missing_scope() -> None:
    _run("ehr", "--scope", "read")
    with pytest.raises(CommandError, match="already exists"):
        _run("ehr", "--scope", "read")
    with pytest.raises(CommandError, match="at least one --scope"):
        _run("lab")


def test_it_offers_every_scope_with_what_it_allows_and_refuses_any_other() -> None:
    parser = load_command_class("diagnosis", "create_api_client").create_parser("manage.py", "create_api_client")
    shown = " ".join(parser.format_help().split())
    assert "--scope {submit,read,lab,stats,photos}" in shown
    for scope, allows in ApiClient.SCOPES.items():
        assert f"{scope} ({allows})" in shown
    with pytest.raises(CommandError, match="invalid choice: 'write'"):
        _run("ehr", "--scope", "write")
    assert not ApiClient.objects.exists()


def test_it_revokes_and_rotates() -> None:
    old = _run("ehr", "--scope", "read")
    assert _run("--revoke", "ehr") == "Revoked API client ehr"
    assert ApiClient.objects.get(name="ehr").revoked_at is not None
    new = _run("--rotate", "ehr")
    client = ApiClient.objects.get(name="ehr")
    assert new != old
    assert client.revoked_at is None
    assert client.token_sha256 == token_hash(new)
    with pytest.raises(CommandError, match="no API client named"):
        _run("--revoke", "nobody")
