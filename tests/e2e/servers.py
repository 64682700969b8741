"""Real ``tastegraph serve`` processes for tests: started on free loopback ports over one data
dir (this checkout's source first on the path), ready when ``/ready`` says so, stopped with
SIGINT (Ctrl-C) and killed if they do not stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(data: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``tastegraph`` command over ``data``, running this checkout
    (``env``: more variables, e.g. ``TASTEGRAPH_STORE_URL``)."""
    path = os.pathsep.join([str(REPO / "src"), str(REPO)])
    return {**os.environ, "TASTEGRAPH_DATA_DIR": str(data), "PYTHONPATH": path, **(env or {})}


def cli(
    data: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tastegraph.cli", *args]
    return subprocess.run(
        cmd, env=cli_env(data, env), cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    base: str


def start(data: Path, *args: str, env: dict[str, str] | None = None) -> Served:
    """Start ``tastegraph serve`` (without waiting for it to be ready)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tastegraph.cli", "serve", "--port", str(port), *args],
        env=cli_env(data, env),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: workers are stopped with it
    )
    return Served(proc, f"http://127.0.0.1:{port}")


def wait_ready(server: Served, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:  # the readiness probe, not a sleep
        if server.proc.poll() is not None:
            err = server.proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            raise RuntimeError(f"server exited: {err}")
        try:
            if httpx.get(f"{server.base}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("server never became ready")
        time.sleep(0.2)


def stop(server: Served, timeout: float = 30) -> int:
    """Ctrl-C, then a kill of the whole process group if it does not stop; the exit status."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGINT)
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout)
    return int(server.proc.returncode)
