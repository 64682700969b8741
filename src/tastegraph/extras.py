"""Optional dependencies: what only some commands need, and the message when one is missing.

A serving install (``pip install tastegraph``) leaves out what only the offline commands use;
each extra installs one group (``pip install 'tastegraph[eval]'``):

- ``eval``: ``implicit`` (the ALS and BPR peers of ``tastegraph eval recs``) and ``matplotlib``
  (the plots of ``eval recs`` and ``tastegraph simulate``);
- ``clip``: ``open_clip`` for the ``clip:<name>`` model packs (checked in
  :func:`tastegraph.models.make_encoders`);
- ``postgres``: ``psycopg`` for a PostgreSQL store (checked in ``store/postgresql.py``);
- ``ray``: ``ray[data]`` for ``ingest --ray`` and ``reindex --reencode --ray`` (checked in
  ``catalog/pipeline/ray_session.py``).

Call :func:`require` where the package is first needed, before importing from it, so that the
user reads which extra to install instead of a bare ``ModuleNotFoundError``.

Example
-------
>>> require("json", extra="eval", purpose="Reading JSON").__name__
'json'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from tastegraph.errors import MissingExtra

__all__ = ["EXTRAS", "require"]

# extra -> the distributions it installs (as in pyproject.toml)
EXTRAS: dict[str, tuple[str, ...]] = {
    "eval": ("implicit", "matplotlib"),
    "clip": ("open-clip-torch",),
    "postgres": ("psycopg[binary]",),
    "ray": ("ray[data]",),
}


def require(module: str, *, extra: str, purpose: str, package: str = "") -> ModuleType:
    """Import ``module``, or raise :class:`~tastegraph.errors.MissingExtra` naming ``extra``.

    ``purpose`` starts the message ("The ALS peer of eval recs"); ``package`` is the name to
    install when it differs from the module's top-level name.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = package or module.split(".", 1)[0]
        raise MissingExtra(
            f"{purpose} needs {name}, which is not installed.",
            hint=f"pip install 'tastegraph[{extra}]'",
            extra=extra,
            package=name,
        ) from exc
