"""Loading implicit-feedback interactions (who touched what, when) into contiguous integer ids.

Accepted inputs
---------------
- a MovieLens folder: ``u.data`` (100K: ``user \\t item \\t rating \\t unix_time``, no header),
  ``ratings.csv`` (``userId,movieId,rating,timestamp`` with a header) or ``ratings.dat``
  (1M/10M: ``user::item::rating::time``);
- a CSV/TSV file of ``user, item, timestamp`` with or without a header. The delimiter is detected
  from the first line (tab, comma, semicolon, ``|``, ``::`` or runs of spaces). With a header the
  columns are found by name (``user``/``userId``/``user_id``, ``item``/``movieId``/``item_id``,
  ``timestamp``/``time``/``ts``); without one, three fields mean ``user, item, timestamp`` and four
  or more mean the MovieLens order ``user, item, rating, timestamp``.

Every rating counts as one implicit interaction whatever its value. A user-item pair seen more than
once keeps its earliest timestamp: the first contact is the event a recommender tries to predict.
Timestamps are Unix seconds (integers or decimals) or ISO 8601 dates.

Example
-------
>>> data = load_interactions(Path("../shared/data/movielens-100k"))  # doctest: +SKIP
>>> data.n_users, data.n_items, data.n_interactions                   # doctest: +SKIP
(943, 1682, 100000)
>>> X = data.to_csr()  # users x items, binary                       # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from tastegraph.errors import InvalidInput

__all__ = ["Interactions", "latest_per_user", "load_interactions", "split_by_time", "to_csr"]

I64 = NDArray[np.int64]

# Files looked for, in order, when the path is a folder.
_FOLDER_FILES = ("u.data", "ratings.csv", "ratings.dat", "ratings.tsv", "interactions.csv")

_USER_NAMES = {"user", "userid", "user_id", "uid", "customer_id", "visitorid", "visitor_id"}
_ITEM_NAMES = {"item", "itemid", "item_id", "iid", "movieid", "movie_id", "product_id", "productid"}
_TIME_NAMES = {"timestamp", "time", "ts", "unix_time", "datetime", "date", "event_time"}
_ALL_NAMES = _USER_NAMES | _ITEM_NAMES | _TIME_NAMES | {"rating", "score", "weight", "value"}

_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Interactions:
    """Deduplicated interactions with ids remapped to ``0..n-1``.

    ``user_ids[u]`` / ``item_ids[i]`` give back the original id (as text) of index ``u`` / ``i``.
    """

    users: I64
    items: I64
    timestamps: I64
    user_ids: NDArray[np.str_]
    item_ids: NDArray[np.str_]
    source: str = ""

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.users)

    def subset(self, mask: NDArray[np.bool_]) -> Interactions:
        """The interactions where ``mask`` is true, in the same id space (ids are not remapped)."""
        return Interactions(
            self.users[mask],
            self.items[mask],
            self.timestamps[mask],
            self.user_ids,
            self.item_ids,
            self.source,
        )

    def to_csr(self) -> sp.csr_matrix:
        """Binary users x items matrix (float32) over the full id space."""
        return to_csr(self.users, self.items, self.n_users, self.n_items)

    def time_csr(self) -> sp.csr_matrix:
        """Users x items matrix of each interaction's timestamp (same pattern as ``to_csr``)."""
        m = sp.csr_matrix(
            (self.timestamps.astype(np.float64), (self.users, self.items)),
            shape=(self.n_users, self.n_items),
        )
        m.sort_indices()
        return m


def to_csr(users: I64, items: I64, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary float32 CSR matrix from index arrays (duplicates collapse to 1)."""
    m = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items)
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return m


def load_interactions(path: Path | str) -> Interactions:
    """Load interactions from a MovieLens folder or a user/item/timestamp file.

    Parameters
    ----------
    path
        A folder holding ``u.data``, ``ratings.csv`` or ``ratings.dat``, or a CSV/TSV file.

    Returns
    -------
    Interactions
        Deduplicated (earliest timestamp per user-item pair), ids remapped to contiguous ints,
        users and items in the numeric (or else lexical) order of their original ids.

    Raises
    ------
    InvalidInput
        Missing file, unreadable text, a line with missing fields or a bad timestamp (the message
        and ``details['line']`` give the 1-based line number), or no interactions at all.
    """
    path = Path(path)
    file = _resolve(path)
    users_raw, items_raw, times = _parse(file)
    if not users_raw:
        raise InvalidInput(f"{file}: no interactions found", hint="the file is empty")
    u_idx, u_ids = _remap(users_raw)
    i_idx, i_ids = _remap(items_raw)
    ts = np.asarray(times, dtype=np.int64)
    # Earliest timestamp per pair: sort by (pair, time) and keep each pair's first row.
    order = np.lexsort((ts, i_idx, u_idx))
    u_s, i_s, t_s = u_idx[order], i_idx[order], ts[order]
    first = np.ones(len(u_s), dtype=bool)
    first[1:] = (u_s[1:] != u_s[:-1]) | (i_s[1:] != i_s[:-1])
    return Interactions(u_s[first], i_s[first], t_s[first], u_ids, i_ids, str(path))


def _resolve(path: Path) -> Path:
    if path.is_dir():
        for name in _FOLDER_FILES:
            if (path / name).is_file():
                return path / name
        raise InvalidInput(
            f"{path}: no interaction file found",
            hint="expected one of " + ", ".join(_FOLDER_FILES),
        )
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file or folder", hint="check the --dataset path")
    return path


def _lines(file: Path) -> Iterator[tuple[int, str]]:
    """Non-empty lines with their 1-based numbers; decoding errors name the line."""
    with file.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"{file}:{lineno}: not UTF-8 text ({exc.reason})",
                    hint="save the file as UTF-8",
                    line=lineno,
                ) from exc
            text = text.strip()
            if text and not text.startswith("#"):
                yield lineno, text


def _detect_delimiter(line: str) -> str | None:
    """The separator of ``line``; ``None`` means runs of whitespace."""
    for delim in ("::", "\t", ",", ";", "|"):
        if delim in line:
            return delim
    return None


def _split(line: str, delim: str | None) -> list[str]:
    parts = _WS.split(line) if delim is None else line.split(delim)
    return [p.strip().strip('"').strip("'") for p in parts]


def _parse_time(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return int(value) if np.isfinite(value) else None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)  # naive dates are read as UTC so runs agree anywhere
    return int(dt.timestamp())


def _columns(header: list[str] | None, n_fields: int) -> tuple[int, int, int]:
    """Indices of the user, item and timestamp columns."""
    if header is not None:
        names = [h.lower().replace(" ", "_") for h in header]
        found = [
            next((k for k, n in enumerate(names) if n in group), -1)
            for group in (_USER_NAMES, _ITEM_NAMES, _TIME_NAMES)
        ]
        if min(found) >= 0:
            return found[0], found[1], found[2]
    # Positional: user,item,timestamp or MovieLens user,item,rating,timestamp.
    return (0, 1, 2) if n_fields == 3 else (0, 1, 3)


def _parse(file: Path) -> tuple[list[str], list[str], list[int]]:
    lines = _lines(file)
    first = next(lines, None)
    if first is None:
        return [], [], []
    delim = _detect_delimiter(first[1])
    fields = _split(first[1], delim)
    header: list[str] | None = None
    if {f.lower().replace(" ", "_") for f in fields} & _ALL_NAMES:
        header = fields
    elif len(fields) >= 3 and _parse_time(fields[2 if len(fields) == 3 else 3]) is None:
        header = fields  # an unknown header: its time column is not a time
    n_fields = len(fields)
    if n_fields < 3:
        raise InvalidInput(
            f"{file}:{first[0]}: expected at least 3 fields (user, item, timestamp), "
            f"found {n_fields}",
            hint="each line needs user, item and timestamp",
            line=first[0],
        )
    cu, ci, ct = _columns(header, n_fields)
    need = max(cu, ci, ct) + 1
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []

    def take(lineno: int, parts: list[str]) -> None:
        if len(parts) < need:
            raise InvalidInput(
                f"{file}:{lineno}: expected {need} fields, found {len(parts)}",
                hint="each line needs user, item and timestamp",
                line=lineno,
            )
        u, i, t = parts[cu], parts[ci], _parse_time(parts[ct])
        if not u or not i:
            raise InvalidInput(
                f"{file}:{lineno}: empty user or item id", hint="fill in the id", line=lineno
            )
        if t is None:
            raise InvalidInput(
                f"{file}:{lineno}: bad timestamp {parts[ct]!r}",
                hint="timestamps are Unix seconds or ISO 8601 dates",
                line=lineno,
            )
        users.append(u)
        items.append(i)
        times.append(t)

    if header is None:
        take(first[0], fields)
    for lineno, text in lines:
        take(lineno, _split(text, delim))
    return users, items, times


def _remap(raw: list[str]) -> tuple[I64, NDArray[np.str_]]:
    """Contiguous indices, ordered numerically when every id is an integer (so 2 < 10)."""
    uniq, inverse = np.unique(np.asarray(raw), return_inverse=True)
    try:
        numeric = np.array([int(x) for x in uniq], dtype=np.int64)
    except ValueError:
        return inverse.astype(np.int64), uniq
    order = np.argsort(numeric, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse].astype(np.int64), uniq[order]


def latest_per_user(
    users: I64, items: I64, timestamps: I64, min_count: int = 2
) -> NDArray[np.bool_]:
    """Mask of each user's latest interaction, for users with at least ``min_count`` of them.

    Ties on the timestamp go to the higher item index, so the choice depends on the data only,
    never on the order of lines in the file.

    Examples
    --------
    >>> u = np.array([0, 0, 0, 1]); i = np.array([5, 3, 4, 1]); t = np.array([1, 2, 2, 9])
    >>> latest_per_user(u, i, t).tolist()
    [False, False, True, False]
    """
    if len(users) == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((items, timestamps, users))
    u_sorted = users[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = u_sorted[1:] != u_sorted[:-1]
    counts = np.bincount(users)
    mask = np.zeros(len(users), dtype=bool)
    chosen = order[last]
    mask[chosen[counts[users[chosen]] >= min_count]] = True
    return mask


def split_by_time(timestamps: I64, test_fraction: float = 0.2) -> NDArray[np.bool_]:
    """Mask of the test side of one global time split: the latest ``test_fraction`` of events.

    The cut is a timestamp ``t*`` (the ``1 - test_fraction`` quantile): test is ``t >= t*``, so
    every test interaction is at or after every training one and equal times never straddle it.

    Examples
    --------
    >>> split_by_time(np.array([5, 1, 3, 2, 4]), 0.4).tolist()
    [True, False, False, False, True]
    """
    n = len(timestamps)
    if n == 0:
        return np.zeros(0, dtype=bool)
    k = min(n - 1, max(0, int(np.floor(n * (1.0 - test_fraction)))))
    cut = np.sort(timestamps, kind="stable")[k]
    test: NDArray[np.bool_] = timestamps >= cut
    if test.all():  # everything at one instant: nothing earlier to train on
        return np.zeros(n, dtype=bool)
    return test
