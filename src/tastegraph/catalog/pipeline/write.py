"""Writing one encoded batch: its rows in one store transaction, then the run's tally.

``add_pins`` commits the batch's pins, vectors, source refs and change log together, so a kill
loses a whole batch or nothing; a row whose bytes are already a pin (same content hash) is not
added again, and its words go to the metadata update instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tastegraph.catalog.pipeline.report import IngestReport
    from tastegraph.catalog.sources import SourceItem
    from tastegraph.store import NewPin
    from tastegraph.store.ports import PinWriter

__all__ = ["Written", "tally", "write_batch"]


@dataclass
class Written:
    """What one batch's transaction did."""

    added_ids: list[int] = field(default_factory=list)
    # Rows whose bytes were already a pin: (that pin, the row), in order.
    existing: list[tuple[int, SourceItem]] = field(default_factory=list)


def write_batch(store: PinWriter, rows: Sequence[NewPin], items: Sequence[SourceItem]) -> Written:
    """Commit ``rows`` (made from ``items``, in order) in one transaction."""
    out = Written()
    for item, (pin_id, created) in zip(items, store.add_pins(rows), strict=True):
        if created:
            out.added_ids.append(pin_id)
        else:
            out.existing.append((pin_id, item))
    return out


def tally(report: IngestReport, known: dict[int, list[SourceItem]], written: Written) -> None:
    """Count a written batch in the run's report; rows naming known pins go to ``known``."""
    report.added += len(written.added_ids)
    report.added_ids.extend(written.added_ids)
    report.existing += len(written.existing)
    for pin_id, item in written.existing:
        known.setdefault(pin_id, []).append(item)
