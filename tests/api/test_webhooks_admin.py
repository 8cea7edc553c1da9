from __future__ import annotations

import pytest

from diagnosis import api_auth, sealed, webhooks
from diagnosis.models import WebhookDelivery
from tests.conftest import client_for
from tests.diagnosis.helpers import case_for, image_for

pytestmark = pytest.mark.django_db


def test_the_admin_shows_the_webhook_and_its_deliveries_but_never_the_secret(nurse, admin_user) -> None:
    client, _ = api_auth.api_client_create("ehr", ["submit"])
    secret = webhooks.api_client_webhook_set(client=client, url="https://ehr.example.org/in")
    analysis = image_for(case_for(nurse)).analyses.get()
    WebhookDelivery.objects.create(client=client, analysis=analysis, payload={}, last_error="HTTP 503", attempts=2)
    browser = client_for(admin_user)

    change = browser.get(f"/admin/diagnosis/apiclient/{client.pk}/change/").content.decode()
    assert "https://ehr.example.org/in" in change
    assert secret not in change
    client.refresh_from_db()
    assert client.webhook_secret_sealed not in change
    deliveries = browser.get("/admin/diagnosis/webhookdelivery/")
    assert deliveries.status_code == 200
    assert "HTTP 503" in deliveries.content.decode()
    assert browser.get("/admin/diagnosis/webhookdelivery/add/").status_code == 403


def test_the_admin_works_after_secret_key_changed_and_saving_keeps_the_secret(admin_user, settings) -> None:
    client, _ = api_auth.api_client_create("ehr", ["submit"])
    secret = webhooks.api_client_webhook_set(client=client, url="https://ehr.example.org/in")
    client.refresh_from_db()
    stored = client.webhook_secret_sealed
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "rotated-" + "k" * 50  # no fallback: the secret no longer decrypts
    browser = client_for(admin_user)
    url = f"/admin/diagnosis/apiclient/{client.pk}/change/"

    page = browser.get(url)
    assert page.status_code == 200
    assert stored not in page.content.decode()
    assert browser.get("/admin/diagnosis/apiclient/").status_code == 200
    saved = browser.post(url, {"name": "ehr-renamed", "scopes": '["submit"]', "revoked_at_0": "", "revoked_at_1": ""})
    assert saved.status_code == 302, saved.content.decode()

    client.refresh_from_db()
    assert (client.name, client.webhook_secret_sealed) == ("ehr-renamed", stored)
    settings.SECRET_KEY = old_key
    assert sealed.unseal(client.webhook_secret_sealed) == secret
