"""Artefacts from the store as local files, cached in the data dir by digest.

A process that publishes a file (``tastegraph train``, the projection fit) keeps its own copy
where it wrote it and puts the bytes in the store (``ports.ArtefactFiles``); any other process
over the same store whose data dir lacks that file fetches it once into
``DATA_DIR/models/artefacts/<sha256>`` (a file) or ``.../<sha256>/`` (a folder, published as a
tar), checked against the digest, and uses that copy from then on. Writes are atomic (a
temporary name, then a rename), so two processes fetching at once both end with one whole copy.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Protocol

from tastegraph.errors import NotFound

__all__ = ["ArtefactReader", "cache_dir", "fetch_file", "fetch_folder", "pack_folder"]


class ArtefactReader(Protocol):
    def get_artefact(self, digest: str) -> bytes: ...


def cache_dir(data_dir: Path) -> Path:
    return data_dir / "models" / "artefacts"


def pack_folder(folder: Path) -> bytes:
    """``folder`` as an uncompressed tar of its files, the same bytes for the same files (names
    sorted, times and owners zeroed), so publishing an unchanged folder twice is one version."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.size = path.stat().st_size
            info.mode = 0o644
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()


def fetch_file(store: ArtefactReader, digest: str, data_dir: Path) -> Path:
    """The artefact ``digest`` as a local file (fetched from the store the first time)."""
    target = cache_dir(data_dir) / digest
    if target.is_file():
        return target
    data = store.get_artefact(digest)  # checked against the digest there
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{digest[:12]}-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def fetch_folder(store: ArtefactReader, digest: str, data_dir: Path) -> Path:
    """The artefact ``digest`` (a tar from :func:`pack_folder`) unpacked as a local folder."""
    target = cache_dir(data_dir) / digest
    if target.is_dir():
        return target
    data = store.get_artefact(digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{digest[:12]}-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for m in tar.getmembers():
                # Only plain files inside the folder (a tar of our own making has nothing else).
                if not m.isfile() or m.name.startswith("/") or ".." in Path(m.name).parts:
                    raise NotFound(f"artefact {digest[:12]} is not a folder this version wrote")
            tar.extractall(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: its copy is the same bytes
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
