"""Storage behind one entry point: ``open_store(url)``; the ports are in ``store.ports``."""

from __future__ import annotations

from tastegraph.errors import InvalidInput
from tastegraph.store.ports import NewPin, Store, TokenInfo
from tastegraph.store.sql import DIALECTS, SQLStore, now_iso

__all__ = ["KNOWN_SCHEMES", "NewPin", "SQLStore", "Store", "TokenInfo", "now_iso", "open_store"]

KNOWN_SCHEMES = tuple(DIALECTS)


def open_store(url: str, *, upgrade: bool = False) -> SQLStore:
    """Open the store at ``url``; unknown schemes list the known ones.

    An empty database gets the newest schema. One at an older schema is upgraded when
    ``upgrade`` is given or its backend upgrades on open (SQLite); otherwise
    :class:`~tastegraph.errors.SchemaOutdated` names ``tastegraph db upgrade``.
    """
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in KNOWN_SCHEMES:
        raise InvalidInput(
            f"unknown store URL scheme {scheme!r}",
            hint=f"known schemes: {', '.join(s + '://' for s in KNOWN_SCHEMES)}",
        )
    return SQLStore(url, upgrade=upgrade)
