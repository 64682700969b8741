"""Where a Ray run runs: a local Ray started for the run, or a cluster that is already up.

:func:`ray_session` is the only place that starts or joins Ray. Without an address it starts
a local Ray on this machine's cores with a small object store and no dashboard, and stops it
afterwards; with one it first checks, within a few seconds, that something answers there (a
Ray client that cannot reach its cluster retries for a long time) and then joins it. When Ray
is already initialised in this process (a test's simulated cluster, a notebook) it is used as
it is and left running.

``ray`` is imported here, lazily, and nowhere else outside :mod:`.ray_runner` and
:mod:`.ray_stages`: a serving install without the ``ray`` extra never imports it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from urllib.parse import urlsplit

from tastegraph.errors import RayUnavailable
from tastegraph.extras import require

__all__ = ["LOCAL", "RayOptions", "check_answers", "import_ray", "ray_session"]

# The value of ``--ray`` given without an address: start a local Ray for the run.
LOCAL = "local"
# How long the address check waits for a TCP answer.
_CONNECT_TIMEOUT_S = 3.0
# Ray's default GCS port, when an address names a host only.
_DEFAULT_PORT = 6379
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HINT = (
    "start a cluster there (`ray start --head` on that machine), check the address "
    "(HOST:PORT of its head node, or ray://HOST:10001 for Ray Client), or give --ray "
    "without an address to run on a local Ray"
)


@dataclass(frozen=True)
class RayOptions:
    """How a Ray ingest runs.

    ``address``: ``None``/``"local"`` starts a local Ray, anything else joins that cluster
    (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``). ``actors``: encoder actors (each loads the
    models once); ``actor_cpus`` / ``decode_cpus``: the CPUs each encoder actor and decode task
    claims (below one, so that actors never hold every CPU and stall the decode stage).
    ``object_store_mb`` / ``num_cpus``: the local Ray's object store and CPUs (``None``: all).
    """

    address: str | None = None
    actors: int = 2
    actor_cpus: float = 0.5
    decode_cpus: float = 0.5
    object_store_mb: int = 256
    num_cpus: int | None = None

    @property
    def local(self) -> bool:
        return self.address in (None, "", LOCAL)


def _host_port(address: str) -> tuple[str, int] | None:
    """The host and port an address names (``None`` for ``auto``, which Ray resolves)."""
    if address == "auto":
        return None
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    if not parts.hostname:
        raise RayUnavailable(f"{address!r} is not a Ray address", hint=_HINT, address=address)
    try:
        port = parts.port or _DEFAULT_PORT
    except ValueError as exc:
        raise RayUnavailable(
            f"{address!r} is not a Ray address ({exc})", hint=_HINT, address=address
        ) from exc
    return parts.hostname, port


def check_answers(address: str, timeout: float = _CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`RayUnavailable` unless a gRPC server (Ray's GCS, or Ray Client) answers.

    Two steps, each bounded by ``timeout``: a TCP connection (a refused or unreachable address
    fails at once), then the start of an HTTP/2 handshake (a port that accepts connections but
    is not Ray says nothing, and Ray itself would keep retrying it for minutes).
    """
    where = _host_port(address)
    if where is None:
        return
    try:
        sock = socket.create_connection(where, timeout=timeout)
    except OSError as exc:
        why = f"no answer within {timeout:.0f} s" if isinstance(exc, TimeoutError) else None
        raise RayUnavailable(
            f"no Ray cluster answers at {address} ({why or exc.strerror or exc})",
            hint=_HINT,
            address=address,
        ) from exc
    with sock:
        try:
            # An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server answers
            # with its own SETTINGS frame (type 4) straight away.
            sock.sendall(_H2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            head = sock.recv(9)
            speaks = len(head) >= 4 and head[3] == 4
        except OSError:
            speaks = False
    if not speaks:
        raise RayUnavailable(
            f"no Ray cluster answers at {address} (the port is open, but what listens there "
            f"does not speak Ray's protocol within {timeout:.0f} s)",
            hint=_HINT,
            address=address,
        )


def import_ray() -> ModuleType:
    """``ray`` with Ray Data, or :class:`~tastegraph.errors.MissingExtra` naming the extra."""
    ray = require("ray", extra="ray", purpose="Running on Ray (--ray)", package="ray[data]")
    require("ray.data", extra="ray", purpose="Running on Ray (--ray)", package="ray[data]")
    return ray


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[ModuleType]:
    """Ray, initialised for this process while the block runs (see the module's docstring)."""
    ray = import_ray()
    if ray.is_initialized():
        _quiet_data(ray)
        yield ray
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if options.local:
            ray.init(
                num_cpus=options.num_cpus,
                object_store_memory=options.object_store_mb * 1024 * 1024,
                include_dashboard=False,
                **quiet,
            )
        else:
            assert options.address is not None
            check_answers(options.address)
            ray.init(address=options.address, **quiet)
    except RayUnavailable:
        raise
    except Exception as exc:  # ConnectionError, RuntimeError, a version mismatch...
        where = "a local Ray" if options.local else f"the Ray cluster at {options.address}"
        raise RayUnavailable(
            f"could not start or join {where}: {type(exc).__name__}: {exc}",
            hint=_HINT if not options.local else "see `ray status`; free some memory or CPUs",
            address=options.address or LOCAL,
        ) from exc
    _quiet_data(ray)
    try:
        yield ray
    finally:
        ray.shutdown()


def _quiet_data(ray: ModuleType) -> None:
    """No Ray Data progress bars or start-up chatter: the run reports its own progress."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
