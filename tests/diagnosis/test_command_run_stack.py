"""run_stack (what `make run` serves with): the worker gets one process per core, each running the model on one
thread unless MPOX_INFERENCE_THREADS says otherwise. The processes themselves are started by the integration tests."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.core.management import call_command

from diagnosis.management.commands import run_stack


class ExitedProcess:
    """A child that has already exited, so that run_stack returns at once."""

    returncode = 0

    def poll(self) -> int:
        return 0

    def wait(self, timeout: float | None = None) -> int:
        return 0


@pytest.fixture
def started(monkeypatch) -> list[tuple[list[str], dict[str, str]]]:
    calls: list[tuple[list[str], dict[str, str]]] = []

    def popen(cmd: list[str], *, env: dict[str, str], **kwargs: Any) -> ExitedProcess:
        calls.append((cmd, env))
        return ExitedProcess()

    monkeypatch.setattr(run_stack.subprocess, "Popen", popen)
    monkeypatch.setattr(run_stack.signal, "signal", lambda *args: None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.delenv("MPOX_INFERENCE_THREADS", raising=False)
    return calls


def worker(started: list[tuple[list[str], dict[str, str]]]) -> tuple[list[str], dict[str, str]]:
    return next((cmd, env) for cmd, env in started if "celery" in cmd)


def test_the_worker_runs_one_process_per_core_with_one_model_thread_each(started) -> None:
    call_command("run_stack", "--port", "8123")
    cmd, env = worker(started)
    assert cmd[cmd.index("--concurrency") + 1] == "3"
    assert env["MPOX_INFERENCE_THREADS"] == "1"
    web_env = next(env for cmd, env in started if "gunicorn" in cmd)
    assert "MPOX_INFERENCE_THREADS" not in web_env


def test_zero_model_threads_in_the_environment_also_means_one_per_process(started, monkeypatch) -> None:
    monkeypatch.setenv("MPOX_INFERENCE_THREADS", "0")  # .env.example's value
    call_command("run_stack", "--port", "8123")
    assert worker(started)[1]["MPOX_INFERENCE_THREADS"] == "1"


def test_a_model_thread_count_in_the_environment_is_kept(started, monkeypatch) -> None:
    monkeypatch.setenv("MPOX_INFERENCE_THREADS", "2")
    call_command("run_stack", "--port", "8123")
    assert worker(started)[1]["MPOX_INFERENCE_THREADS"] == "2"


def test_a_single_worker_process_lets_the_runtime_use_every_core(started) -> None:
    call_command("run_stack", "--port", "8123", "--concurrency", "1")
    cmd, env = worker(started)
    assert cmd[cmd.index("--concurrency") + 1] == "1"
    assert "MPOX_INFERENCE_THREADS" not in env
