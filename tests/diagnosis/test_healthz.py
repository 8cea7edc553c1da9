from __future__ import annotations

import socket

import pytest
from django.test import Client

from diagnosis import services

pytestmark = pytest.mark.django_db


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_reports_everything_ok(predictor) -> None:
    model_version = services.model_version_ensure_active(predictor=predictor)
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok", "model": model_version.version}


def test_it_needs_no_login_and_is_never_cached(predictor) -> None:
    services.model_version_ensure_active(predictor=predictor)
    response = Client().get("/healthz")
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_it_fails_without_an_active_model_version() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["model"] == "error: no active model version"


def test_it_fails_when_the_weights_file_is_gone(predictor, settings, tmp_path) -> None:
    services.model_version_ensure_active(predictor=predictor)
    settings.MPOX_MODEL_WEIGHTS = tmp_path / "gone.pt"
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["model"] == "error: weights file missing"


def test_it_fails_when_the_broker_is_unreachable(predictor, settings) -> None:
    services.model_version_ensure_active(predictor=predictor)
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    response = Client().get("/healthz")
    assert response.status_code == 503
    report = response.json()
    assert report["database"] == "ok"
    assert report["broker"].startswith("error")
