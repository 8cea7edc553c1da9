from __future__ import annotations

import pytest

from diagnosis import api_auth, webhooks
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
    deliveries = browser.get("/admin/diagnosis/webhookdelivery/")
    assert deliveries.status_code == 200
    assert "HTTP 503" in deliveries.content.decode()
    assert browser.get("/admin/diagnosis/webhookdelivery/add/").status_code == 403
