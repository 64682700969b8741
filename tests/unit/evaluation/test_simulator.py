"""Feed A/B simulator: determinism, stable assignment, report shape, tastegraph beats popular."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tastegraph.errors import InvalidInput
from tastegraph.evaluation.simulator.policies import POLICIES, assign
from tastegraph.evaluation.simulator.run import simulate


def catalog(
    n: int = 1200, k: int = 12, d: int = 24, seed: int = 0
) -> tuple[np.ndarray, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cl = rng.integers(0, k, n)
    vecs = (centres[cl] + 0.25 * rng.normal(size=(n, d))).astype(np.float32)
    boards = [f"b{c}-{rng.integers(0, 6)}" for c in cl]
    labels = [f"l{c}-{rng.integers(0, 4)}" for c in cl]
    return vecs, boards, labels


def test_assignment_is_stable_and_balanced() -> None:
    first = [assign(u, POLICIES) for u in range(3000)]
    assert first == [assign(u, POLICIES) for u in range(3000)]
    # Independent of who else is in the experiment or in which order they arrive.
    assert [assign(u, POLICIES) for u in reversed(range(3000))] == first[::-1]
    counts = {p: first.count(p) for p in POLICIES}
    assert all(900 <= c <= 1100 for c in counts.values()), counts
    assert assign(7, POLICIES, "salt-a") in POLICIES


def test_simulation_is_deterministic_for_a_seed() -> None:
    vecs, boards, labels = catalog(500, 6)
    a = simulate(vecs, boards, labels, users=30, sessions=3, seed=4, bootstrap=50)
    b = simulate(vecs, boards, labels, users=30, sessions=3, seed=4, bootstrap=50)
    assert a == b
    c = simulate(vecs, boards, labels, users=30, sessions=3, seed=5, bootstrap=50)
    assert c != a
    for name in POLICIES:
        entry = a["policies"][name]
        assert entry["users"] == sum(
            assign(u, POLICIES, "tastegraph-ab-4") == name for u in range(30)
        )
        for key in ("saves_per_session", "dwell_per_session_s", "hide_rate", "coverage"):
            assert entry[key]["lo"] <= entry[key]["mean"] <= entry[key]["hi"]


def test_unknown_policy_is_refused() -> None:
    vecs, boards, labels = catalog(100, 4)
    with pytest.raises(InvalidInput):
        simulate(vecs, boards, labels, users=5, sessions=1, policies=("random",))


def test_tastegraph_beats_popular_on_dwell(tmp_path: Path) -> None:
    vecs, boards, labels = catalog()
    out = simulate(
        vecs,
        boards,
        labels,
        users=240,
        sessions=4,
        seed=2,
        bootstrap=300,
        plot_path=tmp_path / "sim.png",
    )
    lift = out["lift"]
    # This run gives +111% [+62%, +168%]: the margin over the +19% target keeps it stable.
    assert lift["mean"] > 0.5 and lift["lo"] > 0.19, lift
    assert lift["target_met"]
    tg, pop = out["policies"]["tastegraph"], out["policies"]["popular"]
    assert tg["saves_per_session"]["mean"] > pop["saves_per_session"]["mean"]
    assert tg["coverage"]["mean"] > pop["coverage"]["mean"]
    png = Path(out["plot"])
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
