"""Real nginx and haproxy in front of real servers, each run with the config docs/deploy.md tells
users to write (only addresses and the port are substituted, and the files it needs are put in a
temporary folder), so the documented configs are the ones under test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import REPO, Served, free_port

DEPLOY_DOC = REPO / "docs" / "deploy.md"


def documented(lang: str) -> str:
    """The ```{lang} block of docs/deploy.md."""
    m = re.search(rf"```{lang}\n(.*?)```", DEPLOY_DOC.read_text(), re.DOTALL)
    assert m, f"docs/deploy.md has no ```{lang} block"
    return m.group(1)


def executable(name: str) -> str:
    """The proxy's binary; a skip (a failure in CI, whose .ci/run installs it) when absent."""
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed: .ci/run installs it")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return found


def _with_upstreams(block: str, pattern: str, make: list[str]) -> str:
    """Replace the documented pair of server lines with ``make`` (one line per upstream)."""
    lines = re.compile(pattern, re.MULTILINE)
    assert len(lines.findall(block)) == 2, "the documented config lists two servers"
    first = lines.search(block)
    assert first
    return (
        block[: first.start()]
        + "\n".join(make)
        + lines.sub("", block[first.start() :]).lstrip("\n")
    )


def nginx_config(upstreams: list[str], port: int, tmp: Path) -> str:
    """The documented block inside a minimal main config whose files all live under ``tmp``; the
    access log records the upstreams tried for each request."""
    block = documented("nginx")
    m = re.search(r"^(\s*)server 10\.0\.0\.\d+:8000 (.*)$", block, re.MULTILINE)
    assert m
    servers = [f"{m.group(1)}server {addr} {m.group(2)}" for addr in upstreams]
    block = _with_upstreams(block, r"^\s*server 10\.0\.0\.\d+:8000 .*$", servers)
    assert "listen 80;" in block
    block = block.replace("listen 80;", f"listen 127.0.0.1:{port};")
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temps = "\n".join(f"    {kind}_temp_path {tmp / kind};" for kind in kinds)
    return f"""daemon off;
worker_processes 1;
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
    log_format upstream '$status|$upstream_addr|$upstream_status';
    access_log {tmp / "access.log"} upstream;
{temps}
{block}
}}
"""


def haproxy_config(upstreams: list[str], port: int) -> str:
    """The documented config, with each response naming the server that answered it."""
    block = documented("haproxy")
    servers = [f"    server tg{i} {addr} check" for i, addr in enumerate(upstreams, 1)]
    block = _with_upstreams(block, r"^\s*server tg\d 10\.0\.0\.\d+:8000 check$", servers)
    assert "bind :80" in block
    block = block.replace("bind :80", f"bind 127.0.0.1:{port}")
    return block.rstrip("\n") + "\n    http-response set-header X-Upstream %[srv_name]\n"


@dataclass
class Proxy(Served):
    access_log: Path | None = None

    def tried(self) -> list[list[str]]:
        """nginx: per logged request, the upstreams tried in order (the last one answered)."""
        assert self.access_log is not None
        lines = self.access_log.read_text().splitlines()
        return [line.split("|")[1].split(", ") for line in lines]

    def statuses(self) -> set[str]:
        """nginx: every status it sent a client."""
        assert self.access_log is not None
        return {line.split("|")[0] for line in self.access_log.read_text().splitlines()}


def _run(cmd: list[str], proxy_base: str, make: type[Proxy] = Proxy, **kw: Path) -> Iterator[Proxy]:
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    proxy = make(proc, proxy_base, **kw)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
            try:
                httpx.get(f"{proxy.base}/health", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, f"{cmd[0]} never answered"
                time.sleep(0.1)
        yield proxy
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def nginx(upstreams: list[str], tmp: Path) -> Iterator[Proxy]:
    exe = executable("nginx")
    tmp.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o777)  # nginx's workers drop root and write the temp paths
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_config(upstreams, port, tmp))
    check = subprocess.run(
        [exe, "-t", "-p", str(tmp), "-c", str(conf)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    cmd = [exe, "-p", str(tmp), "-c", str(conf)]
    yield from _run(cmd, f"http://127.0.0.1:{port}", access_log=tmp / "access.log")


@contextmanager
def haproxy(upstreams: list[str], tmp: Path) -> Iterator[Proxy]:
    exe = executable("haproxy")
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = tmp / "haproxy.cfg"
    conf.write_text(haproxy_config(upstreams, port))
    check = subprocess.run([exe, "-c", "-f", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    yield from _run([exe, "-db", "-f", str(conf)], f"http://127.0.0.1:{port}")
