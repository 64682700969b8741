"""What an ingest run reports: counts, the quarantine, and where the time went."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tastegraph.domain import QuarantineEntry

if TYPE_CHECKING:
    from tastegraph.catalog.runs import InterruptedRun

__all__ = ["Clock", "IngestReport"]


@dataclass
class IngestReport:
    run_id: str
    source: str
    seen: int = 0
    added: int = 0
    existing: int = 0  # same bytes as a pin already in the catalog (content hash)
    skipped: int = 0  # source refs finished by an earlier run
    # Of the rows naming an image already in the catalog (skipped + existing): those whose
    # words changed the pin, and those that changed nothing.
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    near_duplicate_groups: int = 0  # groups holding at least one pin this run added
    seconds: float = 0.0  # the run itself, after setup
    setup_seconds: float = 0.0  # one-off model work before the clock (exports, label vectors)
    interrupted: list[InterruptedRun] = field(default_factory=list)  # earlier runs found dead
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    added_ids: list[int] = field(default_factory=list)
    # Seconds per stage (see :class:`Clock`); stages overlap, so they do not add up to ``seconds``.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return self.rejected > 0

    @property
    def empty(self) -> bool:
        """The source named nothing at all (an empty folder or manifest)."""
        return self.seen == 0

    @property
    def images_per_s(self) -> float:
        return self.added / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "source": self.source,
            "status": "empty" if self.empty else "partial" if self.partial else "complete",
            "seen": self.seen,
            "added": self.added,
            "existing": self.existing,
            "skipped": self.skipped,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "near_duplicate_groups": self.near_duplicate_groups,
            "seconds": round(self.seconds, 3),
            "setup_seconds": round(self.setup_seconds, 3),
            "interrupted_runs": [
                {"run_id": r.run_id, "source": r.source, "started_at": r.started_at}
                for r in self.interrupted
            ],
            "images_per_s": round(self.images_per_s, 2),
            "quarantine": [
                {"source": q.source, "reason": q.reason, "message": q.message}
                for q in self.quarantine
            ],
        }


class Clock:
    """Seconds per ingest stage, summed over the run (wall clock unless it says CPU).

    ``setup``: listing the source, checking what is done, preparing the workers. ``decode``: CPU
    seconds the decode workers spent preparing images (without workers: this thread's time).
    ``wait_decode``: this thread waiting for decoded images (worker start-up included).
    ``image_model`` / ``text_model``: the encoders. ``bridge_tags``: ConSE, labels and building
    the rows, and ``store``: the store transactions (both on the writer thread when there is one).
    ``wait_store``: this thread waiting for the writer. ``finish``: stopping the workers and
    writing the quarantine records.
    ``main_cpu`` / ``writer_cpu``: CPU seconds of this thread and of the writer thread.

    On Ray (:mod:`.ray_runner`) the stages report from the cluster: ``ray_start`` (starting or
    joining Ray), ``first_batch`` (waiting for the first encoded batch: actor start-up and the
    first decodes), ``wait_ray`` (waiting for the others), ``actor_start`` (the slowest actor's
    model loading), ``image_model`` / ``text_model`` / ``bridge_tags`` summed over the actors,
    and CPU seconds ``decode_cpu``, ``encode_cpu`` and ``store_cpu``.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def since(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        self.add(stage, now - t0)
        return now
