"""Enumerate what to ingest: a folder of images, a CSV or JSONL manifest, one file or one URL.

:func:`iter_source` yields a :class:`SourceItem` per image to ingest and a :class:`SourceError`
per manifest row that cannot be used, so the caller quarantines that row and carries on. Only a
source that cannot be read at all (missing, no usable CSV header, not UTF-8 at the header) raises
:class:`~tastegraph.errors.InvalidInput`.

Manifests
---------
Column names (CSV) and keys (JSONL) are case-insensitive. The image column may be called
``image``, ``image_url``, ``path``, ``file`` or ``url`` (first present wins, in that order; the
others are kept as attributes). ``title``, ``description``, ``link``, ``board`` and ``tags`` fill
their fields; every other column is kept in ``attributes``. Relative image paths are resolved
against the manifest's folder; URLs are kept as they are.

Example CSV::

    image,title,tags,price
    shoes/red.jpg,Red sneaker,shoes|red,59.90
    https://example.com/a.png,Blue bag,,120
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from tastegraph.errors import InvalidInput

__all__ = [
    "IMAGE_COLUMNS",
    "IMAGE_EXTENSIONS",
    "MANIFEST_EXTENSIONS",
    "SourceError",
    "SourceItem",
    "iter_source",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"}
)
MANIFEST_EXTENSIONS = frozenset({".csv", ".tsv", ".jsonl", ".ndjson"})
IMAGE_COLUMNS = ("image", "image_url", "path", "file", "url")  # in order of preference
_TEXT_FIELDS = ("title", "description", "link", "board")
# Operating-system litter that is never an image: skipped quietly in folders.
_SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db"})
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_TAG_SEPARATORS = re.compile(r"[,|;]")
# Numbers as CSV writes them: no leading zeros (so codes like "00123" stay text), no exponents.
_INT = re.compile(r"^-?(0|[1-9][0-9]{0,14})$")
_FLOAT = re.compile(r"^-?(0|[1-9][0-9]{0,14})\.[0-9]+$")

Scalar = str | int | float | bool


@dataclass
class SourceItem:
    """One image to ingest and the metadata that came with it."""

    ref: str  # absolute local path or http(s) URL
    title: str = ""
    description: str = ""
    link: str = ""
    board: str = ""
    tags: list[str] = field(default_factory=list)
    attributes: dict[str, Scalar] = field(default_factory=dict)
    row: int = 0  # manifest line number (1 = header of a CSV); 0 outside manifests


@dataclass
class SourceError:
    """A manifest row (or folder) that cannot be used; the rest of the source goes on."""

    row: int
    message: str
    ref: str = ""  # the image value, when the row had one


def iter_source(source: str | Path) -> Iterator[SourceItem | SourceError]:
    """Items to ingest from a folder, a CSV/TSV/JSONL manifest, one image file or one URL.

    A folder is walked recursively in sorted order, skipping hidden files and folders; files
    without an image extension are yielded too, so ingest quarantines them with a reason
    instead of dropping them silently.
    """
    text = str(source)
    if isinstance(source, str) and _URL.match(text):
        yield SourceItem(ref=text)
        return
    path = Path(source)
    if not path.exists():
        raise InvalidInput(
            f"Source {text} does not exist.",
            hint="Give a folder of images, a .csv/.jsonl manifest, an image file or an http(s) "
            "URL.",
        )
    if path.is_dir():
        yield from _iter_folder(path)
        return
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        yield from _iter_csv(path)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _iter_jsonl(path)
    elif suffix == ".json":
        raise InvalidInput(
            f"{text} is a .json file; manifests must be JSON Lines (one object per line).",
            hint="Rename it .jsonl with one JSON object per line, or use a CSV manifest.",
        )
    else:
        yield SourceItem(ref=str(path.absolute()))


# ---------------------------------------------------------------------------------------------
# Folders


def _iter_folder(root: Path) -> Iterator[SourceItem | SourceError]:
    root = root.absolute()
    found: list[str] = []
    unreadable: list[tuple[str, str]] = []

    def on_error(exc: OSError) -> None:
        unreadable.append((str(exc.filename), exc.strerror or str(exc)))

    # followlinks=False: a symlink loop must not make the walk endless; linked files still count.
    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or name.lower() in _SYSTEM_FILES:
                continue
            found.append(os.path.join(dirpath, name))
    for folder, why in unreadable:
        yield SourceError(0, f"Cannot read folder {folder}: {why}.", ref=folder)
    # Sort on the path relative to the root so the order is the same wherever the folder lives.
    cut = len(str(root)) + 1
    found.sort(key=lambda p: p[cut:].replace(os.sep, "/"))
    for p in found:
        yield SourceItem(ref=p)


# ---------------------------------------------------------------------------------------------
# Manifests, shared


def _normalise_key(key: str) -> str:
    return key.strip().lower()


def _resolve_ref(value: str, base: Path) -> str:
    if _URL.match(value):
        return value
    p = Path(value)
    return str(p if p.is_absolute() else base / p)


def _split_tags(value: str) -> list[str]:
    return _dedupe(t.strip() for t in _TAG_SEPARATORS.split(value))


def _dedupe(tags: Iterator[str] | list[str]) -> list[str]:
    out: list[str] = []
    for t in tags:
        if t and t not in out:
            out.append(t)
    return out


def _csv_value(value: str) -> Scalar:
    """A CSV cell as the number or boolean it plainly is, else the text itself."""
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    return value


def _pick_image_key(keys: list[str]) -> str:
    for name in IMAGE_COLUMNS:
        if name in keys:
            return name
    return ""


# ---------------------------------------------------------------------------------------------
# CSV / TSV

_SURROGATE = re.compile("[\udc80-\udcff]")


def _sniff_delimiter(path: Path) -> str:
    """The delimiter of the header line: comma, semicolon (European Excel) or tab."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        header = fh.readline()
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _iter_csv(path: Path) -> Iterator[SourceItem | SourceError]:
    base = path.absolute().parent
    delimiter = _sniff_delimiter(path)
    # surrogateescape: a stray non-UTF-8 byte spoils its own row, not the whole file.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = _read_header(reader, path)
        if header is None:
            return  # an empty file is an empty manifest
        image_key = _pick_image_key(header)
        if not image_key:
            raise InvalidInput(
                f"{path} has no image column (columns: {', '.join(header) or 'none'}).",
                hint="Name the column holding the image path or URL one of: "
                + ", ".join(IMAGE_COLUMNS)
                + ".",
            )
        last_line = reader.line_num
        while True:
            start = last_line + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if reader.line_num == last_line:  # no progress: the reader cannot go on
                    yield SourceError(start, f"Unreadable CSV: {exc}.")
                    return
                last_line = reader.line_num
                yield SourceError(start, f"Malformed CSV row: {exc}.")
                continue
            last_line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue  # blank lines are layout, not rows
            yield _csv_row(cells, header, image_key, start, base)


def _read_header(reader: Any, path: Path) -> list[str] | None:
    try:
        for cells in reader:
            if cells and any(c.strip() for c in cells):
                break
        else:
            return None
    except csv.Error as exc:
        raise InvalidInput(f"{path}: the header line is not valid CSV ({exc}).") from exc
    header = [_normalise_key(c) for c in cells]
    if any(_SURROGATE.search(h) for h in header):
        raise InvalidInput(
            f"{path} is not UTF-8 text.", hint="Save the manifest as UTF-8 (CSV UTF-8 in Excel)."
        )
    seen: set[str] = set()
    for i, name in enumerate(header):
        if not name:
            header[i] = name = f"column_{i + 1}"
        if name in seen:
            raise InvalidInput(
                f"{path} has two columns named {name!r} (names are case-insensitive).",
                hint="Rename or remove one of them.",
            )
        seen.add(name)
    return header


def _csv_row(
    cells: list[str], header: list[str], image_key: str, line: int, base: Path
) -> SourceItem | SourceError:
    if len(cells) != len(header):
        return SourceError(
            line, f"Row has {len(cells)} fields but the header has {len(header)} columns."
        )
    if any(_SURROGATE.search(c) for c in cells):
        return SourceError(line, "Row is not valid UTF-8 text; save the manifest as UTF-8.")
    values = {k: v.strip() for k, v in zip(header, cells, strict=True)}
    image = values.pop(image_key)
    if not image:
        return SourceError(line, f"Row has no value in the {image_key!r} column.")
    item = SourceItem(ref=_resolve_ref(image, base), row=line)
    for name in _TEXT_FIELDS:
        setattr(item, name, values.pop(name, ""))
    item.tags = _split_tags(values.pop("tags", ""))
    # Empty cells mean "no value": leave the attribute out rather than store "".
    item.attributes = {k: _csv_value(v) for k, v in values.items() if v}
    return item


# ---------------------------------------------------------------------------------------------
# JSONL


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _iter_jsonl(path: Path) -> Iterator[SourceItem | SourceError]:
    base = path.absolute().parent
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                yield SourceError(line_no, "Line is not valid UTF-8 text.")
                continue
            if not text:
                continue
            try:
                obj = json.loads(text, parse_constant=_reject_constant)
            except ValueError as exc:
                if line_no == 1 and (text in ("[", "{") or text.startswith("[{")):
                    raise InvalidInput(
                        f"{path} looks like one JSON document, not JSON Lines.",
                        hint="Write one JSON object per line (no surrounding [ ]).",
                    ) from exc
                yield SourceError(line_no, f"Line is not valid JSON: {exc}.")
                continue
            yield _json_row(obj, line_no, base)


def _json_row(obj: Any, line: int, base: Path) -> SourceItem | SourceError:
    if not isinstance(obj, dict):
        return SourceError(line, f"Line is a JSON {type(obj).__name__}, not an object.")
    values: dict[str, Any] = {}
    for key, value in obj.items():
        name = _normalise_key(key)
        if name in values:
            return SourceError(line, f"Key {name!r} appears twice (keys are case-insensitive).")
        values[name] = value
    image_key = _pick_image_key(list(values))
    image = values.pop(image_key, None) if image_key else None
    if not isinstance(image, str) or not image.strip():
        return SourceError(
            line, f"Object has no image path or URL (one of the keys: {', '.join(IMAGE_COLUMNS)})."
        )
    item = SourceItem(ref=_resolve_ref(image.strip(), base), row=line)
    for name in _TEXT_FIELDS:
        value = values.pop(name, None)
        if value is None:
            continue
        if isinstance(value, dict | list):
            return SourceError(line, f"{name!r} must be text, not a JSON {type(value).__name__}.")
        setattr(item, name, str(value).strip())
    tags = values.pop("tags", None)
    if isinstance(tags, str):
        item.tags = _split_tags(tags)
    elif isinstance(tags, list) and all(_is_scalar(t) for t in tags):
        item.tags = _dedupe([str(t).strip() for t in tags])
    elif tags is not None:
        return SourceError(line, "'tags' must be a list of strings or a string.")
    item.attributes = {k: _json_attribute(v) for k, v in values.items() if v is not None}
    return item


def _is_scalar(value: Any) -> TypeGuard[Scalar]:
    return isinstance(value, str | int | float | bool) and not (
        isinstance(value, float) and not math.isfinite(value)
    )


def _json_attribute(value: Any) -> Scalar:
    """Scalars as they are; nested lists/objects kept as their compact JSON text."""
    if _is_scalar(value):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
