"""Saving an index: generation-numbered files and one manifest switched atomically.

The manifest (``index.json``) also carries the index's watermark, how far it has caught up with
the store's change log, so a reload resumes where the last save left off.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import IndexMismatch, InvalidInput
from tastegraph.index.base import REINDEX_HINT, IndexMeta

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "Manifest",
    "check_manifest",
    "commit",
    "load_npy",
    "load_with_retry",
    "read_manifest",
    "save_npy",
    "write_file",
    "write_manifest",
]

MANIFEST = "index.json"
FORMAT_VERSION = 1

# --------------------------------------------------------------------------------------------
# Persistence: generation-numbered files + one manifest switched atomically


@dataclass
class Manifest:
    """The content of ``index.json``: the only file whose replacement commits a save."""

    kind: str
    meta: IndexMeta
    generation: int
    watermark: int
    count: int
    files: dict[str, str]
    params: dict[str, Any]
    format: int = FORMAT_VERSION

    def to_json(self) -> str:
        data = asdict(self)
        data["meta"] = self.meta.to_dict()
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["meta"] = IndexMeta.from_dict(data["meta"])
        return cls(**data)


_GEN_FILE = re.compile(r"^[a-z]+\.(\d{6,})\.[a-z]+$")
_TMP_FILE = re.compile(r"^\.tmp-.*")


def read_manifest(folder: Path) -> Manifest | None:
    """The committed manifest of ``folder``, or None when no index was ever saved there."""
    try:
        text = (folder / MANIFEST).read_text()
    except FileNotFoundError:
        return None
    try:
        return Manifest.from_json(text)
    except (ValueError, KeyError, TypeError, InvalidInput) as exc:
        raise IndexMismatch(
            f"index manifest {folder / MANIFEST} is unreadable: {exc}", hint=REINDEX_HINT
        ) from exc


def check_manifest(man: Manifest, kind: str, meta: IndexMeta, folder: Path) -> None:
    """Refuse files written by another backend, format, model, dimension or settings digest."""
    if man.format != FORMAT_VERSION:
        raise IndexMismatch(
            f"index at {folder} has format {man.format}, this version reads {FORMAT_VERSION}",
            hint=REINDEX_HINT,
        )
    if man.kind != kind:
        raise IndexMismatch(
            f"index at {folder} is a {man.kind!r} index, not {kind!r}",
            hint=f"open it with kind={man.kind!r} or {REINDEX_HINT}",
            saved_kind=man.kind,
            kind=kind,
        )
    diff = man.meta.differences(meta)
    if diff:
        what = ", ".join(f"{f} {a!r} (saved) != {b!r} (wanted)" for f, (a, b) in diff.items())
        raise IndexMismatch(
            f"index at {folder} was built for other vectors: {what}",
            hint=REINDEX_HINT,
            saved=man.meta.to_dict(),
            wanted=meta.to_dict(),
        )


def load_with_retry(folder: Path, load: Callable[[Manifest], Any], attempts: int = 3) -> Any:
    """Read the manifest and call ``load`` on it, retrying if a concurrent save swapped files.

    A writer deletes the previous generation's files right after switching the manifest, so a
    reader that read the old manifest can find its files gone; the new manifest then names files
    that exist.
    """
    for attempt in range(attempts):
        man = read_manifest(folder)
        if man is None:
            return None
        try:
            return load(man)
        except FileNotFoundError as exc:
            if attempt == attempts - 1:
                raise IndexMismatch(
                    f"index in {folder} names a file that is missing: {exc}", hint=REINDEX_HINT
                ) from exc
    return None  # pragma: no cover - the loop either returns or raises


def fsync_dir(folder: Path) -> None:
    # Makes the renames themselves durable; not every platform can open a directory.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(final: Path, write: Callable[[Path], None]) -> None:
    """Write ``final`` through a temporary file in the same folder, fsync it, then rename it."""
    tmp = final.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{final.name}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def save_npy(array: NDArray[Any]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    return write


def load_npy(path: Path) -> NDArray[Any]:
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise IndexMismatch(f"index file {path} is unreadable: {exc}", hint=REINDEX_HINT) from exc


def commit(
    folder: Path,
    previous: int,
    make_manifest: Callable[[int, dict[str, str]], Manifest],
    writers: dict[str, tuple[str, Callable[[Path], None]]],
) -> int:
    """Save a new generation of an index into ``folder`` and return its number.

    Parameters
    ----------
    folder : Path
        The index directory (created if needed).
    previous : int
        The generation this process last read or wrote; the new one is greater than both it and
        whatever the folder's manifest says, so it never overwrites live files.
    make_manifest : callable
        ``(generation, files) -> Manifest`` for the files written.
    writers : dict
        ``role -> (extension, write(path))``: each writes one data file.

    Returns
    -------
    int
        The committed generation.

    Notes
    -----
    Order matters for crash safety: data files first (each through a temporary name, fsynced),
    then the manifest through ``os.replace``, then deletion of older generations. A crash before
    the manifest is replaced leaves the old manifest pointing at old files that still exist; the
    orphaned new files are removed by the next successful save.
    """
    folder.mkdir(parents=True, exist_ok=True)
    current = read_manifest_quietly(folder)
    gen = max(previous, current) + 1
    files: dict[str, str] = {}
    for role, (ext, write) in writers.items():
        name = f"{role}.{gen:06d}.{ext}"
        write_file(folder / name, write)
        files[role] = name
    man = make_manifest(gen, files)
    text = man.to_json()
    write_manifest(folder, text)
    fsync_dir(folder)
    _remove_stale(folder, keep=set(files.values()))
    return gen


def write_manifest(folder: Path, text: str) -> None:
    """The commit point of a save (a module-level function so tests can simulate a crash here)."""

    def write(path: Path) -> None:
        path.write_text(text)

    write_file(folder / MANIFEST, write)


def read_manifest_quietly(folder: Path) -> int:
    try:
        man = read_manifest(folder)
    except IndexMismatch:
        return 0
    return man.generation if man else 0


def _remove_stale(folder: Path, keep: set[str]) -> None:
    for entry in folder.iterdir():
        name = entry.name
        if name in keep or name == MANIFEST:
            continue
        if _GEN_FILE.match(name) or _TMP_FILE.match(name):
            with contextlib.suppress(OSError):
                entry.unlink()
