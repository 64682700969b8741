"""What the engagement service needs from the store (structural: ``SQLStore`` satisfies it).

A second backend implements these methods and the service runs on it unchanged::

    class MyStore:
        def existing_ids(self, table, ids): ...
        ...
    EngagementService(MyStore(), settings, EventBus())
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from tastegraph.engagement.events import EventFilter, TimeWindow

__all__ = ["EngagementStore"]


class EngagementStore(Protocol):
    """Users' boards and saves, and the event log."""

    def existing_ids(self, table: str, ids: Iterable[int]) -> set[int]: ...

    def add_events(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]: ...

    def get_board(self, board_id: int) -> dict[str, Any]: ...

    def save_pin(self, board_id: int, pin_id: int) -> bool: ...

    def count_events(
        self, where: EventFilter | None = None, window: TimeWindow | None = None
    ) -> int: ...

    def find_events(
        self, where: EventFilter, window: TimeWindow, limit: int = 100
    ) -> list[dict[str, Any]]: ...

    def event_stats(self, window: TimeWindow) -> dict[str, Any]: ...

    def delete_events(
        self,
        where: EventFilter,
        window: TimeWindow,
        *,
        actor: tuple[int | None, str],
        note: dict[str, Any] | None = None,
        keep: Callable[[Iterator[dict[str, Any]]], None] | None = None,
    ) -> int: ...
