"""Fixtures shared by the site's tests: personas, private storage in a temporary folder, a real (random) model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from diagnosis import services
from tests.model_weights import build_random_checkpoint


def make_user(role: str, username: str | None = None) -> User:
    user, _ = services.user_create_with_role(username=username or role, role=role, password="not-a-real-password")
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


class Clock:
    """Django's clock (``timezone.now``) running ``offset`` ahead of the real one; the site reads time only there."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)

    def now(self, real: Callable[[], datetime]) -> datetime:
        return real() + self.offset


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Lets a test move time forward: sessions, audit entries and lockouts all see the moved clock."""
    real = timezone.now
    moved = Clock()
    monkeypatch.setattr(timezone, "now", lambda: moved.now(real))
    return moved


@pytest.fixture(scope="session")
def model_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_checkpoint(tmp_path_factory.mktemp("weights") / "w.pt")


@pytest.fixture
def predictor(settings: Settings, model_weights: Path) -> Iterator[object]:
    """The site's model cache pointed at the random test weights, with few threads (CPU is scarce)."""
    import torch

    from diagnosis import inference

    settings.MPOX_MODEL_WEIGHTS = model_weights
    settings.MPOX_INFERENCE_BACKEND = "torch"
    settings.MPOX_INFERENCE_THREADS = 1
    torch.set_num_threads(1)
    inference.predictor_reset()
    yield inference.predictor_get()
    inference.predictor_reset()


@pytest.fixture
def nurse(db: None) -> User:
    return make_user("nurse")


@pytest.fixture
def other_nurse(db: None) -> User:
    return make_user("nurse", "nurse2")


@pytest.fixture
def clinician(db: None) -> User:
    return make_user("clinician")


@pytest.fixture
def auditor(db: None) -> User:
    return make_user("auditor")


@pytest.fixture
def admin_user(db: None) -> User:
    return make_user("admin")


@pytest.fixture
def nurse_client(nurse: User) -> Client:
    return client_for(nurse)


@pytest.fixture
def login_as() -> Callable[[User], Client]:
    return client_for
