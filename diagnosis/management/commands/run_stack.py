from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux only: the child gets SIGTERM if run_stack itself is killed, so nothing is left running."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Command(BaseCommand):
    help = (
        "Run the site on 127.0.0.1 (gunicorn) and one Celery worker with the stale-analysis sweep (beat), "
        "until Ctrl-C or SIGTERM; then stop both."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument(
            "--concurrency", type=int, default=None, help="worker processes (default: one per available core)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        python = sys.executable
        concurrency = options["concurrency"] or _available_cores()
        web = [
            python, "-m", "gunicorn", "mpoxsite.wsgi",
            "--bind", f"{options['host']}:{options['port']}",
            "--workers", str(options["web_workers"]),
            "--threads", "4",
            "--timeout", "120",
            "--access-logfile", "-",
            # The path only: a query string or referrer can carry a patient identifier (as in the Dockerfile).
            "--access-logformat", '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms',
        ]  # fmt: skip
        # Prefork (not solo) so the task time limits are enforced; -B runs the periodic stale sweep in the worker.
        worker = [
            python, "-m", "celery", "-A", "mpoxsite", "worker",
            "--pool", "prefork",
            "--concurrency", str(concurrency),
            "--loglevel", "INFO",
            "--beat",
            "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME,
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        worker_env = dict(env)
        if concurrency > 1 and os.environ.get("MPOX_INFERENCE_THREADS", "0").strip() in ("", "0"):
            # One model thread per process, as in compose: every process running the model on every core would
            # have them compete for the cores (and ONNX Runtime's idle threads spin).
            worker_env["MPOX_INFERENCE_THREADS"] = "1"
        children = [
            subprocess.Popen(
                cmd, cwd=settings.BASE_DIR, env=cmd_env, start_new_session=True, preexec_fn=_die_with_parent
            )
            for cmd, cmd_env in ((web, env), (worker, worker_env))
        ]
        self.stdout.write(f"Mpox Triage on http://{options['host']}:{options['port']}/ (Ctrl-C stops it)")

        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)

        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        failed = [name for name, child in zip(("web", "worker"), children, strict=True) if child.returncode]
        if failed and not stopping:
            sys.exit(f"stopped because the {' and '.join(failed)} process exited")
