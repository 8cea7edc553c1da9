"""Services for the integration tests: real PostgreSQL and Redis on this machine.

In CI (CI=true) a missing service fails the test; elsewhere it is skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.model_weights import build_random_checkpoint

POSTGRES_HOST = os.environ.get("TEST_POSTGRES_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("TEST_POSTGRES_PORT", "5432"))
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable: {error}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def stack_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_checkpoint(tmp_path_factory.mktemp("stack-weights") / "w.pt")


def _postgres_admin_connection() -> object:
    import psycopg

    errors = []
    for user in ("postgres", "root", os.environ.get("USER", "")):
        if not user:
            continue
        try:
            return psycopg.connect(
                host=POSTGRES_HOST, port=POSTGRES_PORT, user=user, dbname="postgres", autocommit=True, connect_timeout=3
            )
        except psycopg.OperationalError as error:
            errors.append(error)
    raise errors[-1]


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A fresh, empty database, dropped afterwards (for fixtures of any scope)."""
    import psycopg

    try:
        admin = _postgres_admin_connection()
    except psycopg.OperationalError as error:
        unavailable("PostgreSQL", error)
    assert isinstance(admin, psycopg.Connection)
    name = f"mpox_it_{uuid.uuid4().hex[:12]}"
    user = admin.info.user
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgres://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    with throwaway_postgres() as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    """Redis database 15, emptied first so no message from an earlier run is delivered to this test's worker."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.flushdb()
    except redis.RedisError as error:
        unavailable("Redis", error)
    return REDIS_URL
