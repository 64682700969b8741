"""A real PostgreSQL for tests: ``TASTEGRAPH_TEST_POSTGRES_URL`` when set, else a throwaway
cluster started here (``initdb``/``pg_ctl``, as the ``postgres`` user when run as root, on a
unix socket in a temporary folder), else nothing: the caller skips, or fails when ``CI=true``.

Each test gets its own database, copied from a template already migrated to head (a copy is
far faster than running the migrations again). The store contract tests run on it always;
``TASTEGRAPH_TEST_STORE=postgresql`` also points the app-level tests' ``settings`` fixture (and
the CLI commands they run) at a fresh database of it.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

ENV = "TASTEGRAPH_TEST_POSTGRES_URL"
_TEMPLATE = "tg_template"


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    return Path(dirs[-1]) if dirs and Path(dirs[-1], "pg_ctl").exists() else None


class Cluster:
    """A cluster of our own in a temporary folder; :meth:`stop` removes it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="tastegraph-pg-"))
        self.data = self.root / "data"
        # PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, args: Sequence[str]) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                   "-U", "postgres", "--no-sync", "-E", "UTF8"])  # fmt: skip
        opts = (
            f"-k {self.root} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                   "-l", str(self.root / "log"), "-w", "start"])  # fmt: skip
        atexit.register(self.stop)  # a session that dies before its teardown still stops it
        return f"postgresql+psycopg://postgres@/postgres?host={self.root}&port=5432"

    def stop(self) -> None:
        if not self.data.exists():
            return
        try:
            self._run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class Server:
    """Hands out fresh databases on one server (``admin_url`` names a database to connect to)."""

    def __init__(self, admin_url: str, cluster: Cluster | None = None) -> None:
        self.admin_url = sa.make_url(admin_url)
        self.cluster = cluster
        self._admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self._names = (f"tg_{os.getpid()}_{i}" for i in itertools.count())
        self._template: str | None = None

    def url(self, database: str) -> str:
        return self.admin_url.set(database=database).render_as_string(hide_password=False)

    def _sql(self, sql: str) -> None:
        with self._admin.connect() as conn:
            conn.exec_driver_sql(sql)

    def fresh_database(self, *, migrated: bool = True) -> str:
        """The URL of a new, empty database (``migrated``: already at the newest schema)."""
        name = next(self._names)
        if migrated:
            if self._template is None:
                from tastegraph.store import open_store

                template = f"{_TEMPLATE}_{os.getpid()}"
                self._sql(f"DROP DATABASE IF EXISTS {template}")
                self._sql(f"CREATE DATABASE {template}")
                open_store(self.url(template)).close()
                self._template = template
            self._sql(f"CREATE DATABASE {name} TEMPLATE {self._template}")
        else:
            self._sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop(self, url: str) -> None:
        name = sa.make_url(url).database
        self._sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def close(self) -> None:
        try:
            if self._template is not None and self.cluster is None:
                self._sql(f"DROP DATABASE IF EXISTS {self._template} WITH (FORCE)")
        finally:
            self._admin.dispose()
            if self.cluster is not None:
                self.cluster.stop()


def start_server() -> tuple[Server | None, str]:
    """A server to test against, or ``(None, why not)``."""
    url = os.environ.get(ENV)
    if url:
        return Server(url), ""
    bindir = _bin_dir()
    if bindir is None:
        return None, f"no PostgreSQL: set {ENV} or install postgresql (initdb, pg_ctl)"
    cluster = Cluster(bindir)
    try:
        return Server(cluster.start(), cluster), ""
    except (OSError, KeyError, subprocess.SubprocessError) as e:
        cluster.stop()
        detail = getattr(e, "stderr", b"") or b""
        return None, f"could not start PostgreSQL from {bindir}: {e} {detail.decode()[-300:]}"
