"""Completion webhooks: when an analysis an API client submitted finishes, POST a small signed JSON to its URL.

The WebhookDelivery row is the source of truth. A task sends it once the analysis is committed; a failed try
sets the row's next due time (exponential backoff) and the periodic sweep sends whatever is due, so a lost
message or a killed worker delays a notification but never drops it.

Signature: ``X-Mpox-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body, keyed with the secret>``.
The secret is stored encrypted (diagnosis/sealed.py) and shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from functools import partial
from http.client import HTTPException
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from diagnosis import sealed
from diagnosis.models import Analysis, ApiClient, WebhookDelivery

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Mpox-Signature"
SERVICE_USER_PREFIX = "api-client-"  # how diagnosis.api.service_user names the user an API client acts as
MAX_BACKOFF_SECONDS = 3600
USER_AGENT = "mpox-triage-webhook/1"
UNSEAL_FAILED = (
    "the webhook secret cannot be decrypted (SECRET_KEY changed?): "
    "set SECRET_KEY_FALLBACKS to the old key or rotate the webhook secret"
)


def webhook_secret_new() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Mpox-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def api_client_webhook_set(*, client: ApiClient, url: str) -> str:
    """Point ``client``'s completion webhook at ``url`` with a new secret, returned once (the caller shows it)."""
    if not url.startswith(("https://", "http://")):
        raise ValidationError({"webhook_url": "The webhook URL must start with https:// or http://."})
    secret = webhook_secret_new()
    client.webhook_url = url
    client.webhook_secret_sealed = sealed.seal(secret)
    client.full_clean(validate_unique=False, validate_constraints=False)
    client.save(update_fields=["webhook_url", "webhook_secret_sealed"])
    return secret


def api_client_webhook_remove(*, client: ApiClient) -> None:
    """No more notifications for ``client``; those still owed are given up at their next try."""
    client.webhook_url = client.webhook_secret_sealed = ""
    client.save(update_fields=["webhook_url", "webhook_secret_sealed"])


def _submitting_client(analysis: Analysis) -> ApiClient | None:
    """The API client whose service user uploaded the photo, or None for a photo uploaded in the browser."""
    user = analysis.image.uploaded_by
    name = user.get_username()
    if user.is_active or not name.startswith(SERVICE_USER_PREFIX):
        return None
    pk = name.removeprefix(SERVICE_USER_PREFIX)
    if not pk.isdigit():
        return None
    return ApiClient.objects.filter(pk=int(pk)).first()


def webhook_payload(*, analysis: Analysis) -> dict[str, Any]:
    """What the client is told: enough to fetch the result with its token, and no patient identifier."""
    return {
        "event": "analysis.finished",
        "analysis_id": analysis.pk,
        "status": analysis.status,
        "label": analysis.label or None,
        "inconclusive": analysis.inconclusive if analysis.status == Analysis.Status.DONE else None,
        "url": settings.MPOX_PUBLIC_URL + reverse("api-analysis", args=[analysis.pk]),
    }


def webhook_delivery_create(*, analysis: Analysis) -> WebhookDelivery | None:
    """Owe the submitting client a notification that ``analysis`` finished; sent once the transaction commits.

    Nothing for a browser upload, a client without a webhook URL or a revoked client. At most one notification per
    analysis and client, so an analysis finished twice (a slow worker and its requeued copy) notifies once.
    """
    client = _submitting_client(analysis)
    if client is None or not (client.webhook_url and client.webhook_secret_sealed) or client.revoked_at is not None:
        return None
    delivery, created = WebhookDelivery.objects.get_or_create(
        client=client,
        analysis=analysis,
        defaults={"payload": webhook_payload(analysis=analysis), "next_attempt_at": timezone.now()},
    )
    if not created:
        return None
    transaction.on_commit(partial(_webhook_enqueue, delivery.pk))
    return delivery


def _webhook_enqueue(delivery_id: int) -> None:
    from diagnosis import tasks

    try:
        tasks.webhook_deliver.delay(delivery_id)
    except Exception:
        # The row stays pending and due: the sweep sends it once the broker is back.
        logger.exception("could not send webhook delivery %s to the broker; the sweep will retry", delivery_id)


def _backoff(attempts: int) -> timedelta:
    seconds = settings.MPOX_WEBHOOK_BACKOFF_SECONDS * 2 ** (attempts - 1)
    return timedelta(seconds=min(seconds, MAX_BACKOFF_SECONDS))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx answer is a failed try, reported as its status code


_opener = urllib.request.build_opener(_NoRedirects)


def _post(*, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """POST once; (status code or None, error text or "")."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=settings.MPOX_WEBHOOK_TIMEOUT_SECONDS) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except TimeoutError:
        return None, "timed out"
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return None, "timed out"
        return None, f"could not connect: {exc.reason}"[:200]
    except (HTTPException, OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:200]


def webhook_deliver(*, delivery_id: int, now: datetime | None = None) -> WebhookDelivery | None:
    """Try to send one due delivery; None if it is not due (another worker holds it, or it is settled).

    The try is claimed by pushing the due time out by a lease, so two workers never send it at once and a worker
    killed mid-try leaves it due again afterwards. ``now`` is the clock (tests pass it).
    """
    now = now or timezone.now()
    lease = timedelta(seconds=settings.MPOX_WEBHOOK_TIMEOUT_SECONDS + 60)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=now + lease, attempts=F("attempts") + 1)
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("client").get(pk=delivery_id)
    client = delivery.client
    if not (client.webhook_url and client.webhook_secret_sealed) or client.revoked_at is not None:
        delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, None
        delivery.last_error = "the client's webhook was removed or the client revoked"
        delivery.save(update_fields=["status", "next_attempt_at", "last_error"])
        return delivery

    try:
        secret = sealed.unseal(client.webhook_secret_sealed)
    except sealed.UnsealError:
        # A failed try like any other, so setting SECRET_KEY_FALLBACKS or a new secret in time still delivers it.
        status_code, error = None, UNSEAL_FAILED
        logger.error("webhook delivery %s for client %s not sent: %s", delivery.pk, client.pk, UNSEAL_FAILED)
    else:
        body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Mpox-Delivery": str(delivery.pk),
            SIGNATURE_HEADER: webhook_signature(secret=secret, timestamp=int(now.timestamp()), body=body),
        }
        status_code, error = _post(url=client.webhook_url, body=body, headers=headers)
    delivery.last_status_code = status_code
    if status_code is not None and 200 <= status_code < 300:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = WebhookDelivery.Status.DELIVERED, now, None
        delivery.last_error = ""
        logger.info("webhook delivery %s for client %s delivered", delivery.pk, client.pk)
    elif delivery.attempts >= settings.MPOX_WEBHOOK_MAX_ATTEMPTS:
        delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, None
        delivery.last_error = error or f"HTTP {status_code}"
        logger.warning("webhook delivery %s gave up after %s tries: %s", delivery.pk, delivery.attempts, error)
    else:
        delivery.next_attempt_at = now + _backoff(delivery.attempts)
        delivery.last_error = error or f"HTTP {status_code}"
        logger.info(
            "webhook delivery %s try %s failed (%s); next at %s",
            delivery.pk,
            delivery.attempts,
            error,
            delivery.next_attempt_at.isoformat(),
        )
    delivery.save(update_fields=["status", "delivered_at", "next_attempt_at", "last_error", "last_status_code"])
    return delivery


def webhook_sweep(*, now: datetime | None = None, limit: int = 100) -> int:
    """Send the deliveries that are due, oldest first, at most ``limit``; how many were tried."""
    now = now or timezone.now()
    due = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
    tried = 0
    for delivery_id in due.order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:limit]:
        if webhook_deliver(delivery_id=delivery_id, now=now) is not None:
            tried += 1
    return tried
