"""Completion webhooks on the running product: the real worker posts to a real receiver, and beat's sweep retries."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.livestack import Session, Stack, manage, running_stack
from tests.photos import jpeg_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Receiver:
    url: str = ""
    statuses: list[int] = field(default_factory=list)  # answered in turn, then 200
    requests: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append((time.monotonic(), dict(self.headers.items()), body))
            self.send_response(state.statuses.pop(0) if state.statuses else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_weights: Path) -> Iterator[Stack]:
    # A sweep every second and a one-second first retry, so that a retry by the sweep is seen within the test.
    with running_stack(
        var_dir=tmp_path_factory.mktemp("webhooks") / "var",
        weights=stack_weights,
        env={"MPOX_WEBHOOK_SWEEP_SECONDS": "1", "MPOX_WEBHOOK_BACKOFF_SECONDS": "1"},
    ) as stack:
        yield stack


def submit(stack: Stack, token: str, patient: str) -> int:
    boundary = uuid.uuid4().hex
    fields = {"body_part": "foot", "stage": "later", "patient_id": patient}
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="lesion.jpg"\r\n'.encode()
        + b"Content-Type: image/jpeg\r\n\r\n"
        + jpeg_bytes()
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    headers = {"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = Session(stack.base_url).request("POST", "/api/v1/analyses", b"".join(parts), headers)
    assert response.status == 202, response.body
    return int(json.loads(response.body)["id"])


def wait_for(receiver: Receiver, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.requests) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(receiver.requests)} of {count} notifications after {timeout:.0f} s")
        time.sleep(0.1)


def delivery_row(stack: Stack, analysis_id: int) -> tuple:
    with sqlite3.connect(stack.var_dir / "db.sqlite3") as db:
        row = db.execute(
            "SELECT status, attempts, last_status_code FROM diagnosis_webhookdelivery WHERE analysis_id = ?",
            (analysis_id,),
        ).fetchone()
    return tuple(row)


def test_the_worker_notifies_the_submitting_client_and_the_sweep_retries(stack: Stack, receiver: Receiver) -> None:
    output = manage(
        "create_api_client", "ehr", "--scope", "submit", "--webhook-url", receiver.url, env=stack.env
    ).split()
    token, secret = output[-2], output[-1]
    assert token.startswith("mpx_")
    assert secret.startswith("whsec_")

    receiver.statuses = [503]  # the first try fails; the sweep sends it again
    analysis_id = submit(stack, token, "MRN-44110022")
    wait_for(receiver, 2)

    (first_at, first_headers, first_body), (second_at, headers, body) = receiver.requests[:2]
    assert body == first_body
    assert headers["X-Mpox-Delivery"] == first_headers["X-Mpox-Delivery"]
    assert second_at - first_at >= 0.9  # not before the backoff
    timestamp, _, digest = headers["X-Mpox-Signature"].partition(",v1=")
    expected = hmac.new(secret.encode(), timestamp.removeprefix("t=").encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(expected.hexdigest(), digest)
    payload = json.loads(body)
    assert (payload["analysis_id"], payload["status"]) == (analysis_id, "done")
    assert b"MRN-44110022" not in body

    deadline = time.monotonic() + 10
    while delivery_row(stack, analysis_id)[0] != "delivered" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert delivery_row(stack, analysis_id) == ("delivered", 2, 200)
    assert "MRN-44110022" not in stack.log()
