from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.test import APIClient

from diagnosis import api_auth, tasks, webhooks
from diagnosis.models import Analysis, ApiClient, WebhookDelivery
from tests.diagnosis.helpers import case_for, image_for
from tests.photos import jpeg_bytes

pytestmark = pytest.mark.django_db

PATIENT = "MRN-7781234"
ROTATED_KEY = "rotated-" + "k" * 50  # a SECRET_KEY other than the one the secrets were sealed under


@dataclass
class Receiver:
    """A real HTTP endpoint on localhost that answers with the scripted statuses (then 200) and records requests."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append((dict(self.headers.items()), body))
            time.sleep(state.delay)
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            if status in (301, 302, 307, 308):
                self.send_header("Location", state.url + "elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/mpox/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def client_with_webhook(url: str) -> tuple[ApiClient, APIClient, str]:
    client, token = api_auth.api_client_create("ehr", ["submit", "read"])
    secret = webhooks.api_client_webhook_set(client=client, url=url)
    http = APIClient()
    http.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client, http, secret


def submit(http: APIClient) -> Analysis:
    response = http.post(
        "/api/v1/analyses",
        {"image": _upload(), "body_part": "hand", "stage": "early", "patient_id": PATIENT},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    return Analysis.objects.get(pk=response.json()["id"])


def _upload() -> object:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("lesion.jpg", jpeg_bytes(), content_type="image/jpeg")


def signature_ok(headers: dict[str, str], body: bytes, secret: str) -> bool:
    """What the README tells a receiver to do."""
    parts = dict(item.split("=", 1) for item in headers["X-Mpox-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def test_a_finished_api_analysis_is_posted_signed_to_the_clients_webhook(
    receiver, predictor, django_capture_on_commit_callbacks
) -> None:
    _, http, secret = client_with_webhook(receiver.url)
    analysis = submit(http)
    with django_capture_on_commit_callbacks() as callbacks:
        tasks.analysis_run.apply(args=(analysis.pk,), throw=True)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.analysis_id, delivery.status, delivery.attempts) == (analysis.pk, "pending", 0)
    # Sent only once the analysis is committed: the task is queued from an on-commit callback.
    queued = [cb for cb in callbacks if getattr(cb, "func", None) is webhooks._webhook_enqueue]
    assert [cb.args for cb in queued] == [(delivery.pk,)]

    tasks.webhook_deliver.apply(args=(delivery.pk,), throw=True)

    [(headers, body)] = receiver.requests
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Mpox-Delivery"] == str(delivery.pk)
    assert signature_ok(headers, body, secret)
    assert not signature_ok(headers, body, "whsec_someone-else")
    assert not signature_ok(headers, body.replace(b"done", b"fail"), secret)
    analysis.refresh_from_db()
    payload = json.loads(body)
    assert payload == {
        "event": "analysis.finished",
        "analysis_id": analysis.pk,
        "status": "done",
        "label": analysis.label,
        "inconclusive": analysis.inconclusive,
        "url": f"http://127.0.0.1:8000/api/v1/analyses/{analysis.pk}",
    }
    assert PATIENT.encode() not in body
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None
    assert delivery.next_attempt_at is None
    # The link works with the client's own token.
    assert http.get(f"/api/v1/analyses/{analysis.pk}").json()["status"] == "done"


def test_a_failed_analysis_is_notified_too(receiver, predictor) -> None:
    _, http, secret = client_with_webhook(receiver.url)
    analysis = submit(http)
    with analysis.image.file.open("wb") as handle:
        handle.write(b"not a photo any more")
    tasks.analysis_run.apply(args=(analysis.pk,), throw=True)
    delivery = WebhookDelivery.objects.get()
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    [(headers, body)] = receiver.requests
    assert signature_ok(headers, body, secret)
    payload = json.loads(body)
    assert (payload["status"], payload["label"], payload["inconclusive"]) == ("failed", None, None)


def test_failed_tries_are_repeated_with_exponential_backoff_until_one_succeeds(receiver, settings) -> None:
    settings.MPOX_WEBHOOK_BACKOFF_SECONDS = 30
    receiver.statuses = [500, 503]
    _, http, _ = client_with_webhook(receiver.url)
    delivery = webhooks.webhook_delivery_create(analysis=submit(http))
    assert delivery is not None
    start = delivery.next_attempt_at
    assert start is not None

    assert webhooks.webhook_sweep(now=start) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, "HTTP 500")
    assert delivery.next_attempt_at == start + timedelta(seconds=30)

    assert webhooks.webhook_sweep(now=start + timedelta(seconds=29)) == 0  # not due yet
    assert len(receiver.requests) == 1
    second = start + timedelta(seconds=30)
    assert webhooks.webhook_sweep(now=second) == 1
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status_code) == (2, 503)
    assert delivery.next_attempt_at == second + timedelta(seconds=60)  # doubled

    assert webhooks.webhook_sweep(now=second + timedelta(seconds=59)) == 0
    assert webhooks.webhook_sweep(now=second + timedelta(seconds=60)) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("delivered", 3, "")
    bodies = {body for _, body in receiver.requests}
    assert len(receiver.requests) == 3
    assert len(bodies) == 1  # the same notification each time
    assert webhooks.webhook_sweep(now=second + timedelta(days=1)) == 0


def test_it_gives_up_after_the_last_attempt(receiver, settings) -> None:
    settings.MPOX_WEBHOOK_MAX_ATTEMPTS = 3
    settings.MPOX_WEBHOOK_BACKOFF_SECONDS = 10
    receiver.statuses = [500] * 10
    _, http, _ = client_with_webhook(receiver.url)
    delivery = webhooks.webhook_delivery_create(analysis=submit(http))
    assert delivery is not None
    now = delivery.next_attempt_at
    assert now is not None
    for _ in range(3):
        assert webhooks.webhook_sweep(now=now) == 1
        now += timedelta(hours=1)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
    assert webhooks.webhook_sweep(now=now + timedelta(days=1)) == 0
    assert len(receiver.requests) == 3


def test_a_slow_endpoint_times_out_and_is_tried_again_later(receiver, settings) -> None:
    settings.MPOX_WEBHOOK_TIMEOUT_SECONDS = 0.2
    receiver.delay = 1.0
    _, http, _ = client_with_webhook(receiver.url)
    delivery = webhooks.webhook_delivery_create(analysis=submit(http))
    assert delivery is not None
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, "timed out")
    assert delivery.last_status_code is None


def test_an_unreachable_endpoint_and_a_redirect_are_failed_tries(receiver) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    _, http, _ = client_with_webhook(f"http://127.0.0.1:{closed_port}/hook")
    delivery = webhooks.webhook_delivery_create(analysis=submit(http))
    assert delivery is not None
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert delivery.last_error.startswith("could not connect")

    receiver.statuses = [302]
    other, token = api_auth.api_client_create("pacs", ["submit"])
    webhooks.api_client_webhook_set(client=other, url=receiver.url)
    http.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    redirected = webhooks.webhook_delivery_create(analysis=submit(http))
    assert redirected is not None
    webhooks.webhook_deliver(delivery_id=redirected.pk)
    redirected.refresh_from_db()
    assert (redirected.last_error, redirected.last_status_code) == ("HTTP 302", 302)
    assert len(receiver.requests) == 1  # the redirect was not followed


def test_browser_uploads_and_clients_without_a_webhook_get_no_notification(nurse, predictor, receiver) -> None:
    client_with_webhook(receiver.url)  # a client with a webhook exists, but did not send these photos
    image = image_for(case_for(nurse))
    tasks.analysis_run.apply(args=(image.analyses.get().pk,), throw=True)
    assert Analysis.objects.get().status == "done"

    _, token = api_auth.api_client_create("no-hook", ["submit"])
    http = APIClient()
    http.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    tasks.analysis_run.apply(args=(submit(http).pk,), throw=True)

    # An inactive user named like a service user but not one (no such client) is not one either.
    impostor = User.objects.create(username="api-client-999", is_active=False)
    tasks.analysis_run.apply(args=(image_for(case_for(nurse, "MRN-2"), impostor).analyses.get().pk,), throw=True)

    assert Analysis.objects.filter(status="done").count() == 3
    assert WebhookDelivery.objects.count() == 0
    assert receiver.requests == []


def test_a_revoked_client_is_not_notified(receiver, predictor) -> None:
    client, http, _ = client_with_webhook(receiver.url)
    analysis = submit(http)
    api_auth.api_client_revoke(client)
    tasks.analysis_run.apply(args=(analysis.pk,), throw=True)
    assert WebhookDelivery.objects.count() == 0


def test_the_sweep_task_sends_what_is_due(receiver) -> None:
    _, http, secret = client_with_webhook(receiver.url)
    delivery = webhooks.webhook_delivery_create(analysis=submit(http))
    assert delivery is not None
    tasks.webhook_sweep.apply(throw=True)
    [(headers, body)] = receiver.requests
    assert signature_ok(headers, body, secret)
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


def test_a_delivery_owed_to_a_removed_webhook_is_given_up_unsent(receiver) -> None:
    client, http, _ = client_with_webhook(receiver.url)
    delivery = webhooks.webhook_delivery_create(analysis=submit(http))
    assert delivery is not None
    webhooks.api_client_webhook_remove(client=client)
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at) == ("failed", None)
    assert "removed" in delivery.last_error
    assert receiver.requests == []


def test_the_secret_is_stored_encrypted_and_deliveries_verify_with_the_one_shown_at_creation(receiver) -> None:
    client, http, secret = client_with_webhook(receiver.url)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM diagnosis_apiclient WHERE id = %s", [client.pk])
        row = repr(cursor.fetchone())
    assert secret.removeprefix("whsec_") not in row
    delivery = webhooks.webhook_delivery_create(analysis=submit(http))
    assert delivery is not None
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    [(headers, body)] = receiver.requests
    assert signature_ok(headers, body, secret)


def test_after_secret_key_rotation_with_the_old_key_as_a_fallback_deliveries_still_verify(receiver, settings) -> None:
    _, http, secret = client_with_webhook(receiver.url)
    delivery = webhooks.webhook_delivery_create(analysis=submit(http))
    assert delivery is not None
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = ROTATED_KEY
    tasks.webhook_deliver.apply(args=(delivery.pk,), throw=True)
    [(headers, body)] = receiver.requests
    assert signature_ok(headers, body, secret)
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


@pytest.mark.parametrize("fix", ["old key as a fallback", "new webhook secret"])
def test_after_secret_key_rotation_without_the_fallback_the_try_fails_naming_the_fix(
    receiver, settings, caplog, fix: str
) -> None:
    client, http, secret = client_with_webhook(receiver.url)
    delivery = webhooks.webhook_delivery_create(analysis=submit(http))
    assert delivery is not None
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = ROTATED_KEY

    with caplog.at_level(logging.INFO, logger="diagnosis.webhooks"):
        tasks.webhook_deliver.apply(args=(delivery.pk,), throw=True)

    assert receiver.requests == []
    delivery.refresh_from_db()
    reason = "set SECRET_KEY_FALLBACKS to the old key or rotate the webhook secret"
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert reason in delivery.last_error
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"webhook delivery {delivery.pk} for client {client.pk} not sent: {webhooks.UNSEAL_FAILED}"
    ]
    client.refresh_from_db()
    assert secret not in caplog.text
    assert client.webhook_secret_sealed not in caplog.text

    # Either fix, made before the tries run out, lets the next try through.
    if fix == "old key as a fallback":
        settings.SECRET_KEY_FALLBACKS = [old_key]
    else:
        secret = webhooks.api_client_webhook_set(client=client, url=receiver.url)
    assert delivery.next_attempt_at is not None
    assert webhooks.webhook_sweep(now=delivery.next_attempt_at) == 1
    [(headers, body)] = receiver.requests
    assert signature_ok(headers, body, secret)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("delivered", 2, "")


def test_a_secret_that_never_decrypts_again_is_given_up_after_the_last_attempt(receiver, settings) -> None:
    settings.MPOX_WEBHOOK_MAX_ATTEMPTS = 2
    _, http, _ = client_with_webhook(receiver.url)
    delivery = webhooks.webhook_delivery_create(analysis=submit(http))
    assert delivery is not None
    settings.SECRET_KEY = ROTATED_KEY
    now = delivery.next_attempt_at
    assert now is not None
    for _ in range(2):
        assert webhooks.webhook_sweep(now=now) == 1
        now += timedelta(hours=1)
    assert webhooks.webhook_sweep(now=now) == 0
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 2, webhooks.UNSEAL_FAILED)
    assert receiver.requests == []
