from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from diagnosis import api_auth
from diagnosis.models import ApiClient
from tests.diagnosis.conftest import private_storage

__all__ = ["api_client_with", "private_storage"]


@pytest.fixture(autouse=True)
def _clear_throttle_cache(db: None) -> Iterator[None]:
    """The rate limit counts in the cache (by default a database table); each test starts with a fresh count."""
    cache.clear()
    yield
    cache.clear()


def api_client_with(*scopes: str) -> APIClient:
    """A DRF test client carrying the token of a new API client that has these scopes."""
    name = f"ehr-{'-'.join(scopes)}-{ApiClient.objects.count() + 1}"
    _, token = api_auth.api_client_create(name, list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
