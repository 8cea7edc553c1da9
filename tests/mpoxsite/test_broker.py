"""The embedded broker (mpoxsite/broker.py): a consumer never sees a message before it is written whole."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import cast

import pytest
from kombu import Connection

from mpoxsite.broker import Channel, Transport


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[Channel]:
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False}
    with Connection("filesystem://", transport=Transport, transport_options=options) as connection:
        yield cast(Channel, connection.default_channel)


def test_a_message_goes_round_the_queue(channel) -> None:
    channel._put("celery", {"body": "analysis 7"})
    assert channel._size("celery") == 1
    assert channel._get("celery") == {"body": "analysis 7"}
    assert channel._size("celery") == 0


def test_a_consumer_polling_while_a_message_is_written_finds_nothing_yet(channel, monkeypatch) -> None:
    seen: list[object] = []
    replace = os.replace

    def poll_then_replace(source: str, target: str) -> None:
        # The moment kombu's own transport left an empty file in the queue, which a worker read and died on.
        try:
            seen.append(channel._get("celery"))
        except Empty:
            seen.append("empty")
        replace(source, target)

    monkeypatch.setattr(os, "replace", poll_then_replace)
    channel._put("celery", {"body": "analysis 8"})

    assert seen == ["empty"]
    assert channel._get("celery") == {"body": "analysis 8"}


def test_the_settings_use_it_for_the_filesystem_broker(settings) -> None:
    from mpoxsite.celery import app

    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        pytest.skip("the tests run against another broker")
    with app.connection_for_write() as connection:
        assert connection.transport_cls == "mpoxsite.broker:Transport"
