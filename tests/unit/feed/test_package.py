"""The feed package's shape: the facade, the source registry, modules of a readable size."""

from __future__ import annotations

from pathlib import Path

import tastegraph.feed as feed
from tastegraph.feed.blend import EXPLOIT, EXPLORE
from tastegraph.feed.data import SOURCES
from tastegraph.feed.sources.registry import GENERATORS, REGISTRY, SOURCE_ARM


def test_facade_exports_resolve() -> None:
    assert {"FeedEngine", "FeedService", "FeedParams", "Event", "EventBatch", "PinTable"} <= set(
        feed.__all__
    )
    for name in feed.__all__:
        assert getattr(feed, name) is not None


def test_every_registered_source_has_a_logged_code_and_an_arm() -> None:
    assert tuple(s.name for s in REGISTRY) == GENERATORS
    assert len(set(GENERATORS)) == len(GENERATORS)
    assert set(GENERATORS) <= set(SOURCES)
    for s in REGISTRY:
        assert s.arm in (EXPLOIT, EXPLORE)
        assert SOURCE_ARM[SOURCES.index(s.name)] == s.arm
    # personal sources exploit; popular, fresh and the cold-start sample explore; related
    # pins' "visual" (never in a feed) counts as personal
    arm = dict(zip(SOURCES, SOURCE_ARM.tolist(), strict=True))
    assert [arm[s] for s in ("interest", "walk", "cf", "visual")] == [EXPLOIT] * 4
    assert [arm[s] for s in ("popular", "fresh", "explore")] == [EXPLORE] * 3


def test_feed_modules_stay_small() -> None:
    root = Path(feed.__file__).parent
    sizes = {
        p.relative_to(root).as_posix(): len(p.read_text().splitlines()) for p in root.rglob("*.py")
    }
    assert max(sizes.values()) < 600, sizes
