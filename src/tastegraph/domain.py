"""Plain data objects shared by every layer (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EVENT_KINDS",
    "MAX_DWELL_MS",
    "MAX_POSITION",
    "SPACES",
    "Hit",
    "Pin",
    "QuarantineEntry",
    "Role",
]

# Vector spaces every pin may have: image features, text of title+description, and the image's
# vector mapped into text space (ConSE), so words can find pictures that have no words.
SPACES = ("image", "text", "conse")

Role = str  # "admin" | "editor" | "viewer"
ROLES = ("viewer", "editor", "admin")

# Engagement event kinds, and the bounds of a valid event (the event parser enforces them, the
# store selects rows outside them as invalid). The engine keeps positions as int32 and dwell as
# float32; a feed slot past a million or a dwell over a day is a client bug, not engagement.
EVENT_KINDS = ("impression", "closeup", "click", "save", "hide", "dwell")
MAX_POSITION = 1_000_000
MAX_DWELL_MS = 86_400_000.0


@dataclass
class Pin:
    id: int
    content_hash: str
    title: str = ""
    description: str = ""
    link: str = ""
    board: str = ""
    tags: list[str] = field(default_factory=list)
    labels: list[tuple[str, float]] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    phash: str = ""
    width: int = 0
    height: int = 0
    format: str = ""
    dup_group: int | None = None
    created_at: str = ""
    updated_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "content_hash": self.content_hash,
            "title": self.title,
            "description": self.description,
            "link": self.link,
            "board": self.board,
            "tags": list(self.tags),
            "labels": [{"label": lab, "score": round(s, 4)} for lab, s in self.labels],
            "attributes": dict(self.attributes),
            "source": self.source,
            "phash": self.phash,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "dup_group": self.dup_group,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass
class Hit:
    """One search result: the pin id, its fused score and which signals matched."""

    pin_id: int
    score: float
    signals: dict[str, float] = field(default_factory=dict)


@dataclass
class QuarantineEntry:
    source: str
    reason: str
    message: str
    run_id: str = ""
