"""The whole product as separate processes, driven over HTTP: for the integration tests and the benchmark.

``start_stack`` runs what ``make run`` runs (migrate, bootstrap_demo, run_stack: gunicorn plus a prefork Celery
worker) with its own ``VAR_DIR``; ``Session`` is a minimal logged-in browser built on urllib (cookies, CSRF,
multipart uploads), so nothing beyond the standard library is needed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, Request, build_opener

ROOT = Path(__file__).resolve().parent.parent
# Variables of the outer environment that would point the stack at other services or files.
ISOLATED = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_BROKER_FOLDER",
    "PRIVATE_STORAGE_ROOT",
    "VAR_DIR",
    "PORT",
    "STATIC_ROOT",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Response:
    status: int
    url: str
    body: str
    headers: dict[str, str]
    content: bytes = b""


@dataclass
class Session:
    base_url: str
    jar: CookieJar = field(default_factory=CookieJar)

    def __post_init__(self) -> None:
        self.opener = build_opener(HTTPCookieProcessor(self.jar))

    def request(
        self, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        request = Request(self.base_url + path, data=data, method=method, headers=headers or {})
        try:
            with self.opener.open(request, timeout=60) as reply:
                content = reply.read()
                return Response(reply.status, reply.geturl(), content.decode("utf-8", "replace"), dict(reply.headers))
        except HTTPError as error:
            content = error.read()
            return Response(error.code, error.geturl(), content.decode("utf-8", "replace"), dict(error.headers))

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        response = self.request("GET", path, headers=headers)
        return response

    def get_bytes(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        try:
            with self.opener.open(Request(self.base_url + path), timeout=60) as reply:
                return reply.status, reply.read(), dict(reply.headers)
        except HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def csrf_token(self) -> str:
        for cookie in self.jar:
            if cookie.name == "csrftoken" and cookie.value:
                return cookie.value
        self.get("/accounts/login/")
        return next(cookie.value or "" for cookie in self.jar if cookie.name == "csrftoken")

    def post_form(self, path: str, fields: dict[str, str]) -> Response:
        data = urlencode({**fields, "csrfmiddlewaretoken": self.csrf_token()}).encode()
        return self.request("POST", path, data, {"Content-Type": "application/x-www-form-urlencoded"})

    def post_multipart(
        self,
        path: str,
        fields: dict[str, str],
        files: dict[str, tuple[str, bytes, str]],
        headers: dict[str, str] | None = None,
    ) -> Response:
        boundary = uuid.uuid4().hex
        parts: list[bytes] = []
        for name, value in {**fields, "csrfmiddlewaretoken": self.csrf_token()}.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        for name, (filename, content, content_type) in files.items():
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            )
            parts.append(head.encode() + content + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self.request(
            "POST",
            path,
            b"".join(parts),
            {"Content-Type": f"multipart/form-data; boundary={boundary}", **(headers or {})},
        )

    # --- the nurse's steps ---

    def login(self, username: str, password: str) -> None:
        response = self.post_form("/accounts/login/", {"username": username, "password": password})
        if not response.url.endswith("/cases/"):
            raise AssertionError(f"login as {username} failed: {response.status} {response.url}")

    def start_case(self, hospital_identifier: str) -> int:
        response = self.post_form("/cases/new", {"hospital_identifier": hospital_identifier})
        match = re.search(r"/cases/(\d+)/$", response.url)
        if response.status != 200 or not match:
            raise AssertionError(f"could not start a case: {response.status} {response.url}")
        return int(match.group(1))

    def upload(
        self, case_id: int, photo: bytes, *, filename: str = "photo.jpg", body_part: str = "arm", script: bool = True
    ) -> int:
        """Upload one tagged photo; returns the new image's id.

        ``script``: as the case page's upload script sends it (answered with the new photo's card, 201); else as the
        form posts without JavaScript (a redirect to the case page, which is fetched).
        """
        content_type = "image/png" if filename.endswith(".png") else "image/jpeg"
        response = self.post_multipart(
            f"/cases/{case_id}/images",
            {"body_part": body_part, "stage": "early"},
            {"photo": (filename, photo, content_type)},
            headers={"HX-Request": "true"} if script else None,
        )
        ids = [int(found) for found in re.findall(r'id="image-(\d+)"', response.body)]
        if response.status != (201 if script else 200) or not ids:
            raise AssertionError(f"upload failed: {response.status} {response.body[:500]}")
        return max(ids)

    def wait_for_result(self, image_id: int, *, timeout: float = 120.0, interval: float = 0.02) -> Response:
        """Poll the image's card as htmx does until it stops polling (286); returns the final card."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.get(f"/images/{image_id}/status", headers={"HX-Request": "true"})
            if response.status == 286:
                return response
            if response.status != 200:
                raise AssertionError(f"status poll failed: {response.status}")
            time.sleep(interval)
        raise AssertionError(f"image {image_id} had no result after {timeout:.0f} s")


@dataclass
class Stack:
    base_url: str
    var_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    passwords: dict[str, str]

    def session(self, username: str = "nurse") -> Session:
        session = Session(self.base_url)
        session.login(username, self.passwords[username])
        return session

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def start_stack(
    *, var_dir: Path, weights: Path, env: dict[str, str] | None = None, concurrency: int = 1, timeout: float = 120
) -> Stack:
    """migrate, bootstrap_demo and run_stack in ``var_dir``, as ``make run`` does; returns once /healthz says 200."""
    port = free_port()
    full_env = {key: value for key, value in os.environ.items() if key not in ISOLATED}
    full_env.update(
        {
            "VAR_DIR": str(var_dir),
            "MPOX_MODEL_WEIGHTS": str(weights),
            "MPOX_INFERENCE_THREADS": "1",
            "DEBUG": "true",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "mpoxsite.settings",
        }
    )
    full_env.update(env or {})
    var_dir.mkdir(parents=True, exist_ok=True)
    manage("migrate", "--noinput", env=full_env)
    passwords = dict(
        (line.split()[0], line.split()[1])
        for line in manage("bootstrap_demo", env=full_env).splitlines()
        if line.startswith("  ")
    )
    log_path = var_dir / "stack.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_stack", "--port", str(port), "--concurrency", str(concurrency)],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = Stack(f"http://127.0.0.1:{port}", var_dir, full_env, process, log_path, passwords)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"run_stack exited with {process.returncode}:\n{stack.log()}")
        try:
            if Session(stack.base_url).get("/healthz").status == 200:
                return stack
        except (URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    stack.stop()
    raise RuntimeError(f"the stack did not become healthy in {timeout:.0f} s:\n{stack.log()}")


@contextmanager
def running_stack(
    *, var_dir: Path, weights: Path, env: dict[str, str] | None = None, concurrency: int = 1
) -> Iterator[Stack]:
    """``start_stack`` for a ``with`` block: the stack's log is printed if the block fails, and it is stopped."""
    stack = start_stack(var_dir=var_dir, weights=weights, env=env, concurrency=concurrency)
    try:
        yield stack
    except BaseException:
        print(stack.log())  # pytest shows it with the failure
        raise
    finally:
        stack.stop()
