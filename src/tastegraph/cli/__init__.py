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
    """The console script: a project error that a command did not handle itself is still the
    one-line message and hint (exit 1), never a traceback."""
    from tastegraph.cli.common import report
    from tastegraph.errors import TastegraphError

    try:
        app()
    except TastegraphError as e:
        report(e)
        raise SystemExit(1) from None
