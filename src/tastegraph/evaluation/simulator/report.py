"""The simulator's report: per-policy metrics with bootstrap intervals, the lift, the plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.extras import require

__all__ = ["Stats", "build_report"]

F64 = NDArray[np.float64]


@dataclass
class Stats:
    """What one simulated person did over the run."""

    sessions: int = 0
    saves: int = 0
    dwell_s: float = 0.0
    hides: int = 0
    impressions: int = 0
    shown: set[int] = field(default_factory=set)


def _ci(values: F64, rng: np.random.Generator, reps: int) -> dict[str, float]:
    if not len(values):
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan")}
    idx = rng.integers(0, len(values), size=(reps, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(values.mean()), "lo": float(lo), "hi": float(hi)}


def build_report(
    stats: dict[int, Stats],
    arm: dict[int, str],
    policies: Sequence[str],
    n_pins: int,
    reps: int,
    seed: int,
    plot_path: Path | str | None,
    config: dict[str, Any],
) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 4])
    out: dict[str, Any] = {"config": config, "policies": {}}
    per_user: dict[str, dict[str, F64]] = {}
    sizes = [sum(1 for u in stats if arm[u] == name and stats[u].sessions) for name in policies]
    m_cov = min(sizes) if sizes else 0
    for name in policies:
        us = [u for u in stats if arm[u] == name and stats[u].sessions]
        s = [stats[u] for u in us]
        sess = np.array([x.sessions for x in s], np.float64)
        metrics = {
            "saves_per_session": np.array([x.saves for x in s], np.float64) / np.maximum(sess, 1),
            "dwell_per_session_s": np.array([x.dwell_s for x in s]) / np.maximum(sess, 1),
            "hide_rate": np.array([x.hides / max(x.impressions, 1) for x in s], np.float64),
        }
        per_user[name] = metrics
        entry: dict[str, Any] = {
            "users": len(us),
            "sessions": int(sess.sum()),
            "impressions": int(sum(x.impressions for x in s)),
        }
        for key, vals in metrics.items():
            entry[key] = _ci(vals, rng, reps)
        entry["coverage"] = _coverage_ci([x.shown for x in s], m_cov, n_pins, rng, reps)
        out["policies"][name] = entry
    if "tastegraph" in per_user and "popular" in per_user:
        a = per_user["tastegraph"]["dwell_per_session_s"]
        b = per_user["popular"]["dwell_per_session_s"]
        lift = {
            "metric": "dwell_per_session_s",
            "over": "popular",
            "mean": float("nan"),
            "lo": float("nan"),
            "hi": float("nan"),
            "target": 0.19,
            "target_met": False,
        }
        if len(a) and len(b) and b.mean() > 0:
            ia = rng.integers(0, len(a), size=(reps, len(a)))
            ib = rng.integers(0, len(b), size=(reps, len(b)))
            ratios = a[ia].mean(axis=1) / np.maximum(b[ib].mean(axis=1), 1e-12) - 1.0
            lo, hi = np.percentile(ratios, [2.5, 97.5])
            mean = float(a.mean() / b.mean() - 1.0)
            lift.update(
                mean=mean, lo=float(lo), hi=float(hi), target_met=bool(mean >= 0.19 and lo > 0)
            )
        out["lift"] = lift
    else:
        out["lift"] = {}
    out["plot"] = str(_plot(out, Path(plot_path))) if plot_path is not None else None
    return out


def _coverage_ci(
    shown: list[set[int]], m: int, n_pins: int, rng: np.random.Generator, reps: int
) -> dict[str, float]:
    """Share of the catalog shown to ``m`` people of the arm, with a half-sampling interval.

    Coverage is a union, not a mean, so it grows with the number of people: arms are compared
    at the same ``m`` (the smallest arm), averaging over random subsets. Bootstrap resamples
    with replacement would repeat people and bias it downward; instead the interval is the
    spread of coverage over random halves (drawn without replacement, which for a mean
    reproduces the full-sample variance), centred on the estimate.
    """
    nan = {"mean": float("nan"), "lo": float("nan"), "hi": float("nan")}
    if not shown or m < 2:
        return nan
    arrays = [np.fromiter(s, np.int64, len(s)) for s in shown]

    def cov(k: int) -> float:
        pick = rng.choice(len(arrays), k, replace=False)
        return len(np.unique(np.concatenate([arrays[j] for j in pick]))) / n_pins

    draws = 1 if m == len(arrays) else 30
    point = float(np.mean([cov(m) for _ in range(draws)]))
    half = np.array([cov(max(1, m // 2)) for _ in range(min(reps, 200))])
    q_lo, q_hi = np.percentile(half, [2.5, 97.5])
    centre = float(half.mean())
    return {
        "mean": point,
        "lo": point - (centre - float(q_lo)),
        "hi": point + (float(q_hi) - centre),
    }


def _plot(report: dict[str, Any], path: Path) -> Path:
    # The object-oriented API with the Agg canvas: no pyplot global state, no display needed.
    require("matplotlib", extra="eval", purpose="The plot of `tastegraph simulate`")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(report["policies"])
    keys = [
        ("saves_per_session", "saves / session"),
        ("dwell_per_session_s", "dwell s / session"),
        ("hide_rate", "hide rate"),
        ("coverage", "catalog coverage"),
    ]
    fig = Figure(figsize=(12, 3.4))
    FigureCanvasAgg(fig)
    colours = ["#8c8c8c", "#4c72b0", "#dd8452", "#55a868"]
    for i, (key, title) in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        means = [report["policies"][n][key]["mean"] for n in names]
        lo = [report["policies"][n][key]["mean"] - report["policies"][n][key]["lo"] for n in names]
        hi = [report["policies"][n][key]["hi"] - report["policies"][n][key]["mean"] for n in names]
        ax.bar(names, means, yerr=[lo, hi], capsize=4, color=colours[: len(names)])
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=20)
    lift = report.get("lift") or {}
    if lift.get("mean") is not None and math.isfinite(lift.get("mean", float("nan"))):
        fig.suptitle(
            f"tastegraph vs popular, dwell/session: {lift['mean']:+.1%} "
            f"[{lift['lo']:+.1%}, {lift['hi']:+.1%}] (95% CI)"
        )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
