"""Reading an image's bytes from a local path or an http(s) URL, within the size limit."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from tastegraph.errors import ImageRejected
from tastegraph.imaging.limits import ImageLimits, reject, too_large_bytes

# httpx is imported where it is used (imaging.fetch): ingest's decode worker processes import
# this module and do not need it (it would cost every worker ~0.1-0.2 s of start-up).

__all__ = ["read_source_bytes"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def read_source_bytes(
    ref: str,
    limits: ImageLimits,
    *,
    timeout: float,
    allow_url: bool,
    allow_private_hosts: bool = True,
    allow_local_files: bool = True,
) -> bytes:
    """The bytes of a local file or an http(s) URL, never more than ``limits.max_bytes``.

    Any scheme other than http/https is refused. Redirects are followed by hand (at most 5),
    each target checked the same way. ``timeout`` bounds each network step and the whole
    download. ``allow_private_hosts=False`` refuses hosts that resolve to loopback, private,
    link-local or reserved addresses (server-side request forgery) and connects to the very
    address it checked, on each hop (see :mod:`tastegraph.imaging.fetch`). Callers passing
    refs from untrusted users (the HTTP API) must set
    ``allow_local_files=False``, else a ref like ``/etc/passwd`` is read from the server's disk.
    """
    scheme = _SCHEME.match(ref)
    # "C:\\x" style drive letters are paths, not one-letter schemes.
    if scheme and len(scheme.group(1)) > 1:
        name = scheme.group(1).lower()
        if name not in ("http", "https"):
            raise reject(
                "unsupported_url",
                f"Only http and https URLs can be fetched, not {name}: URLs.",
                "Give an http(s) URL or a local file path.",
                ref,
            )
        if not allow_url:
            raise reject(
                "url_fetch_disabled",
                "Fetching images by URL is turned off on this server.",
                "Upload the image file instead, or enable the TASTEGRAPH_ALLOW_URL_FETCH setting.",
                ref,
            )
        from tastegraph.imaging.fetch import fetch_url

        return fetch_url(ref, limits, timeout, allow_private_hosts)
    if not allow_local_files:
        raise reject(
            "unsupported_url",
            "Only http and https URLs are accepted here, not local file paths.",
            "Give an http(s) URL, or upload the file.",
            ref,
        )
    return _read_file(ref, limits)


def _read_file(ref: str, limits: ImageLimits) -> bytes:
    path = Path(ref)

    def unreadable(why: str) -> ImageRejected:
        return reject(
            "unreadable_file",
            f"Cannot read {ref}: {why}.",
            "Check the path (relative paths in a manifest are relative to the manifest's folder) "
            "and the file's permissions.",
            ref,
        )

    try:
        # One stat instead of three, read as Path.exists() and Path.is_file() would read it.
        try:
            st = os.stat(path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
                raise unreadable("no such file") from exc
            raise
        except ValueError as exc:  # a path Python cannot pass to the OS (a NUL in it)
            raise unreadable("no such file") from exc
        if not stat.S_ISREG(st.st_mode):  # directories, FIFOs, devices: reading could block
            raise unreadable("not a regular file")
        size = st.st_size
        if size > limits.max_bytes:
            raise too_large_bytes(size, limits.max_bytes, ref)
        with path.open("rb") as fh:
            # Ask for the size stat gave (plus one byte, to notice a file that grew since):
            # read(max_bytes + 1) allocates a 40 MB buffer per file (32 us instead of 10 us for
            # a 28 KB photo). A file that did grow is read on, up to the limit.
            data = fh.read(size + 1)
            if len(data) > size:
                data += fh.read(limits.max_bytes + 1 - len(data))
    except ImageRejected:
        raise
    except OSError as exc:
        raise unreadable(exc.strerror or str(exc)) from exc
    if len(data) > limits.max_bytes:
        raise too_large_bytes(len(data), limits.max_bytes, ref)
    return data
