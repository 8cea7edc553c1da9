from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from diagnosis import sealed
from diagnosis.models import ApiClient

pytestmark = pytest.mark.django_db


def _run(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("create_api_client", *args, stdout=out)
    return out.getvalue().split()


def test_create_api_client_with_a_webhook_prints_its_secret_once() -> None:
    token, secret = _run("ehr", "--scope", "submit", "--webhook-url", "https://ehr.example.org/hooks/mpox")
    client = ApiClient.objects.get(name="ehr")
    assert token.startswith("mpx_")
    assert secret.startswith("whsec_")
    assert len(secret) > 40
    assert client.webhook_url == "https://ehr.example.org/hooks/mpox"
    assert secret not in client.webhook_secret_sealed
    assert sealed.unseal(client.webhook_secret_sealed) == secret


def test_without_a_webhook_only_the_token_is_printed() -> None:
    [token] = _run("ehr", "--scope", "read")
    assert token.startswith("mpx_")
    assert ApiClient.objects.get(name="ehr").webhook_url == ""


@pytest.mark.parametrize("url", ["ftp://ehr.example.org/in", "not a url", "javascript:alert(1)"])
def test_a_bad_webhook_url_creates_no_client(url: str) -> None:
    with pytest.raises(CommandError, match="URL"):
        _run("ehr", "--scope", "submit", "--webhook-url", url)
    assert not ApiClient.objects.exists()


def test_set_webhook_gives_an_existing_client_a_url_and_a_new_secret_and_removes_it() -> None:
    _run("ehr", "--scope", "submit")
    [secret] = _run("--set-webhook", "ehr", "--webhook-url", "https://ehr.example.org/in")
    client = ApiClient.objects.get(name="ehr")
    assert (client.webhook_url, sealed.unseal(client.webhook_secret_sealed)) == ("https://ehr.example.org/in", secret)
    [rotated] = _run("--set-webhook", "ehr", "--webhook-url", "https://ehr.example.org/in")
    assert rotated != secret
    assert " ".join(_run("--set-webhook", "ehr", "--webhook-url", "")) == "Removed the webhook of API client ehr"
    client.refresh_from_db()
    assert (client.webhook_url, client.webhook_secret_sealed) == ("", "")
    with pytest.raises(CommandError, match="--webhook-url"):
        _run("--set-webhook", "ehr")
    with pytest.raises(CommandError, match="no API client"):
        _run("--set-webhook", "pacs", "--webhook-url", "https://pacs.example.org/in")
