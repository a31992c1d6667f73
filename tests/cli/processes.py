"""``grounded`` as a long-running process, the way users start it: spawn, wait for HTTP, signal, reap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
GROUNDED = [sys.executable, "-c", "from grounded.cli import main; main()"]


@contextmanager
def grounded_process(
    *args: str, cwd: Path, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """``grounded ARGS`` in ``cwd`` with stdout piped (unbuffered) and stderr to ``log``; killed if left running."""
    environment = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*GROUNDED, *args], cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=err, text=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()


def wait_http(url: str, proc: subprocess.Popen[str], log: Path, *, status: int = 200, timeout: float = 180) -> None:
    """Poll ``url`` until it answers ``status``; fail with the process's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"grounded exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == status:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{url} did not answer {status} within {timeout:g} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
    """Send ``sig`` and wait for the exit code."""
    proc.send_signal(sig)
    return proc.wait(timeout)
