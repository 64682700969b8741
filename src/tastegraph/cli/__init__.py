"""The ``tastegraph`` command: one module per command group, the tree in :mod:`.common`.

Importing a group's module registers its commands; ``--help`` lists them in this order.
"""

from __future__ import annotations

from tastegraph.cli.common import EXIT_EMPTY, EXIT_PARTIAL, app

# isort: off
from tastegraph.cli import catalog, search, people, feed, events, run, config, db  # noqa: F401

# isort: on

__all__ = ["EXIT_EMPTY", "EXIT_PARTIAL", "app", "main"]


def main() -> None:
    app()
