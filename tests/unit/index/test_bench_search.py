"""``bench/bench_search.py --configs``: side-by-side configs, shared cached builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.bench_search import CONFIGS, parse_configs, run


def test_parse_configs_named_and_inline() -> None:
    got = parse_configs("hnsw, ivf:nprobe=4:k_factor=2,")
    assert got[0] == CONFIGS["hnsw"]
    assert (got[1].kind, got[1].params, got[1].knob) == (
        "ivf",
        {"nprobe": 4, "k_factor": 2},
        "nprobe",
    )
    for bad in ("annoy", "ivf:nprobe"):
        with pytest.raises(SystemExit, match="unknown config"):
            parse_configs(bad)


def test_configs_side_by_side_share_a_cached_build(tmp_path: Path) -> None:
    configs = parse_configs("ivf:train_min=1000:nlist=16,ivf:train_min=1000:nlist=16:k_factor=1")
    kw = {"dim": 32, "n_queries": 20, "n_recall": 20, "sweep": False, "cache": tmp_path}
    report = run([3000], configs=configs, log=lambda _: None, **kw)
    first, second = report["results"]
    assert [r["config"] for r in report["results"]] == [c.name for c in configs]
    assert (first["k_factor"], second["k_factor"]) == (4, 1)
    assert len(list(tmp_path.iterdir())) == 1  # k_factor is a search parameter: one build
    assert first["build_s"] == second["build_s"]
    assert 0.9 <= first["recall_at_k"] <= 1.0 and first["recall_allow1pct"] == 1.0
    again = run([3000], configs=configs[:1], log=lambda _: None, **kw)["results"][0]
    assert again["build_s"] == first["build_s"] and again["recall_at_k"] == first["recall_at_k"]
