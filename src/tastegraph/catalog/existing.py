"""Opening a catalog that must already exist: for commands that read one (search, feed, ...).

``build`` creates the data dir on first use, which is right for ``ingest`` and ``serve`` but
not for a search typed in the wrong folder: that silently created ``./tastegraph-data``, loaded
the models (~48 s) and printed ``0 results``. :func:`open_existing` checks first, without
creating anything or loading a model, and says how to fill the catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tastegraph.errors import NotFound

if TYPE_CHECKING:
    from tastegraph.app import App
    from tastegraph.settings import Settings

__all__ = ["CatalogMissing", "open_existing"]

_FILL_HINT = (
    "Add images with `tastegraph ingest FOLDER_OR_MANIFEST --data {data}` (or try "
    "`tastegraph demo`), or point --data / TASTEGRAPH_DATA_DIR at the data dir you ingested into."
)


class CatalogMissing(NotFound):
    code = "catalog_empty"


def _store_file(settings: Settings) -> Path | None:
    url = settings.resolved_store_url
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def open_existing(settings: Settings, build: Callable[[Settings], App]) -> App:
    """The app over ``settings``' catalog; :class:`CatalogMissing` if it is absent or empty.

    ``build`` (``app.build``) wires the app once the catalog is known to exist.
    """
    data = settings.data_dir
    db = _store_file(settings)
    if db is not None and not db.is_file():
        raise CatalogMissing(
            f"There is no catalog in {data} (no {db.name} there).",
            hint=_FILL_HINT.format(data=data),
        )
    app = build(settings)
    if app.store.count_pins() == 0:
        app.close()
        raise CatalogMissing(
            f"The catalog in {data} is empty: nothing has been ingested yet.",
            hint=_FILL_HINT.format(data=data),
        )
    return app
