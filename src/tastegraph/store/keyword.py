"""What the keyword index holds for a pin (port: ``ports.KeywordIndex``; FTS5: ``sqlite``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tastegraph.store.ports import KeywordDoc

__all__ = ["keyword_doc"]


def keyword_doc(
    pin_id: int,
    title: str,
    description: str,
    tags: Sequence[str],
    labels: Sequence[Sequence[Any]],
) -> KeywordDoc:
    # BM25 covers words people wrote. Model labels stay in ``tags`` for display and filters, but
    # not here: semantic search already covers them, calibrated (ConSE), and exact-word matches
    # on a classifier's guesses crowd out better results in the fusion.
    model = {str(lab[0]) for lab in labels}
    words = " ".join(t for t in tags if t not in model)
    return KeywordDoc(pin_id, title, description, words)
