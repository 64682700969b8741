"""Offline evaluation of recommenders: every model side by side, tuning, report and plot.

Two protocols, ``loo`` (HR@10, NDCG@10 against 99 sampled negatives) and ``temporal``
(Recall@20, NDCG@20 over a global time split), every model on the same split and the same
sampled negatives; see :mod:`tastegraph.evaluation.recs.protocols`.

Hyperparameters of every model are chosen on a validation split carved from the training data
with the same rule as the protocol (the latest training interaction per user, or the latest 20%
of the training period), never on the test split.

Models
------
``served-feed`` (:data:`SERVED`) is what users get: the feed engine the server runs, built from the
training interactions as ``tastegraph train`` and a server start build it, under the server's
settings (never tuned here), and asked for pages through its own ``feed`` call
(:mod:`tastegraph.evaluation.served_feed`). The peers are ``popularity``, ``itemknn``, ``ease``,
``als`` and ``bpr`` (:mod:`tastegraph.evaluation.recs.models`). ``offline-tastegraph`` is
:class:`~tastegraph.evaluation.recs.models.offline_tastegraph.TasteGraph`, a candidates +
LambdaRank model that only this evaluation runs; it is reported for reference and no user is
served by it.

Example
-------
>>> report = evaluate_recs(Path("../shared/data/movielens-100k"), "loo")  # doctest: +SKIP
>>> report["served"], report["best_peer"], report["served_vs_best_peer"]   # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import InvalidInput, TastegraphError
from tastegraph.evaluation.recs.data import Interactions, load_interactions
from tastegraph.evaluation.recs.models import Recommender, make_model
from tastegraph.evaluation.recs.protocols import (
    N_NEGATIVES,
    PRIMARY,
    PROTOCOLS,
    SECONDARY,
    TEST_FRACTION,
    LooSplit,
    TemporalSplit,
    full_ranking_metrics,
    make_split,
    sampled_metrics,
)
from tastegraph.evaluation.served_feed import SERVED, ServedFeed, last_seen
from tastegraph.extras import require

__all__ = ["OFFLINE", "PEERS", "SERVED", "evaluate_recs", "main", "plot_report", "tune"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

# One thread everywhere (BLAS, implicit, LightGBM): the evaluation machines have two cores shared
# with other work, and measured there a second thread made LightGBM 3x and ALS 1.2x slower
# (OpenMP threads spin-waiting on a busy core); one thread also keeps every run reproducible.
THREADS = 1


# -- running models ---------------------------------------------------------------------------
def _fit(model: Recommender, train: Interactions) -> Recommender:
    return model.fit(train.to_csr(), train.time_csr())


def _measure(model: Recommender | ServedFeed, split: LooSplit | TemporalSplit) -> dict[str, float]:
    if isinstance(split, LooSplit):
        if len(split.users) == 0:
            return {"hr_at_10": 0.0, "ndcg_at_10": 0.0}
        if isinstance(model, ServedFeed):
            # Each user asks for a page right after their last training interaction.
            now = last_seen(split.train, split.users)
            scores = model.score(split.users, split.candidates, now=now)
        else:
            scores = model.score(split.users, split.candidates)
        hr, ndcg = sampled_metrics(scores, k=10)
        return {"hr_at_10": float(hr.mean()), "ndcg_at_10": float(ndcg.mean())}
    if len(split.users) == 0:
        return {"recall_at_20": 0.0, "ndcg_at_20": 0.0}
    if isinstance(model, ServedFeed):
        recs = model.recommend(split.users, n=20)  # a feed never repeats what the user saw
    else:
        recs, _ = model.recommend(split.users, n=20, exclude_seen=True)
    recall, ndcg = full_ranking_metrics(recs, split.truth, k=20)
    return {"recall_at_20": float(recall.mean()), "ndcg_at_20": float(ndcg.mean())}


# -- tuning -----------------------------------------------------------------------------------
def _grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    keys = list(axes)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes.values())]


# Small grids on purpose: the whole run must fit in a few minutes on two cores. Each axis spans
# the values that matter on MovieLens-sized data; the same grids serve every dataset.
GRIDS: dict[str, list[dict[str, Any]]] = {
    "popularity": [{}],
    "itemknn": _grid(k=[20, 50, 100, 200]),
    "ease": _grid(lambda_=[10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0]),
    "als": _grid(factors=[32, 64, 128], regularization=[0.01, 0.1], alpha=[1.0, 5.0]),
    "bpr": _grid(factors=[64, 128], learning_rate=[0.01, 0.02], iterations=[100]),
}
FIXED: dict[str, dict[str, Any]] = {
    "als": {"num_threads": THREADS},
    "bpr": {"num_threads": 1},  # one thread: lock-free SGD is only reproducible single-threaded
}
PEERS = tuple(GRIDS)
# The row of models.offline_tastegraph.TasteGraph: a model only this evaluation runs, named for
# what it is.
OFFLINE = "offline-tastegraph"


def _key(metrics: dict[str, float], protocol: str) -> tuple[float, float]:
    return metrics[PRIMARY[protocol]], metrics[SECONDARY[protocol]]


def tune(
    name: str,
    grid: Sequence[dict[str, Any]],
    val: LooSplit | TemporalSplit,
    protocol: str,
    *,
    seed: int = 0,
    fixed: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Pick the grid point with the best validation metric (primary, then secondary).

    Parameters
    ----------
    name
        Model name for :func:`~tastegraph.evaluation.recs.models.make_model`.
    grid
        Candidate parameter dicts; the first wins ties, so order grids from simplest.
    val
        A split carved from the *training* data only.
    protocol
        ``"loo"`` or ``"temporal"`` (chooses the metric).
    seed
        Passed to models that take one.
    fixed
        Parameters added to every grid point (threads).

    Returns
    -------
    (params, metrics)
        The chosen grid point and its validation metrics.
    """
    best: tuple[dict[str, Any], dict[str, float]] | None = None
    for point in grid:
        params = {**(fixed or {}), **point}
        if "seed" in make_model(name)._param_names():
            params["seed"] = seed
        metrics = _measure(_fit(make_model(name, **params), val.train), val)
        if best is None or _key(metrics, protocol) > _key(best[1], protocol):
            best = (point, metrics)
    assert best is not None, "empty grid"
    return best


def tastegraph_params(protocol: str, tuned: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """tastegraph's settings: generators take the peers' validated settings; the ranker's
    training split and groups mirror the protocol's task (fixed, not tuned on test)."""
    ease = tuned.get("ease", {})
    knn = tuned.get("itemknn", {})
    als = tuned.get("als", {})
    params: dict[str, Any] = {
        "ease_lambda": ease.get("lambda_", 500.0),
        "knn_k": knn.get("k", 100),
        "als_factors": als.get("factors", 64),
        "als_regularization": als.get("regularization", 0.05),
        "als_alpha": als.get("alpha", 2.0),
        "num_threads": THREADS,
    }
    if protocol == "loo":
        # The test ranks one positive among random unseen items: train on exactly that task.
        params.update(
            val_split="last",
            n_val_rounds=2,
            train_groups="sampled",
            n_random=N_NEGATIVES,
            cutoff=10,
        )
    else:
        # The test ranks the whole catalog after a time cut: train on what the generators
        # propose after earlier cuts. Three short periods give more users to learn from than
        # one long one (few users are active on both sides of any single cut).
        params.update(
            val_split="time",
            val_fraction=TEST_FRACTION / 2,
            n_val_rounds=3,
            train_groups="candidates",
            n_random=0,
            cutoff=20,
        )
    return params


# -- report -----------------------------------------------------------------------------------
def _round(x: float) -> float:
    return round(float(x), 4)


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    protocol = report["protocol"]
    primary, secondary = PRIMARY[protocol], SECONDARY[protocol]
    table = Table(
        title=f"{protocol} on {Path(report['dataset']['path']).name} "
        f"({report['dataset']['n_users']} users, {report['dataset']['n_items']} items)"
    )
    table.add_column("model")
    table.add_column(primary, justify="right")
    table.add_column(secondary, justify="right")
    table.add_column("fit s", justify="right")
    table.add_column("params")
    for row in report["models"]:
        style = "bold green" if row["model"] == report["served"] else None
        shown = {k: v for k, v in row["params"].items() if k != "num_threads"}
        table.add_row(
            row["model"],
            f"{row[primary]:.4f}",
            f"{row[secondary]:.4f}",
            f"{row['fit_seconds']:.1f}",
            json.dumps(shown, separators=(",", ":")),
            style=style,
        )
    console = Console(stderr=True)
    console.print(table)
    ratio = report["served_vs_best_peer"]
    console.print(
        f"best peer: {report['best_peer']}; {report['served']} (what users get) / best peer on "
        f"{primary}: {'n/a' if ratio is None else f'{ratio:.3f}'}; plot: {report['plot']}"
    )


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """Bar chart of every model's two metrics side by side; returns ``path``."""
    require("matplotlib", extra="eval", purpose="The plot of `tastegraph eval recs`")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocol = report["protocol"]
    metrics = [PRIMARY[protocol], SECONDARY[protocol]]
    names = [row["model"] for row in report["models"]]
    x = np.arange(len(names))
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4.0), dpi=110)
    for j, metric in enumerate(metrics):
        values = [row[metric] for row in report["models"]]
        bars = ax.bar(x + (j - 0.5) * width, values, width, label=metric)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xticks(x, names)
    # The served engine is the row that matters to users: outlined bars, bold name.
    served = names.index(report["served"]) if report.get("served") in names else None
    if served is not None:
        for patch in ax.patches[served :: len(names)]:
            patch.set_edgecolor("black")
            patch.set_linewidth(1.6)
        ax.get_xticklabels()[served].set_fontweight("bold")
        ax.axvspan(served - 0.5, served + 0.5, color="0.92", zorder=0)
    ax.set_ylabel("score")
    ax.set_title(
        f"{Path(report['dataset']['path']).name}: {protocol} protocol "
        f"({report['split']['n_eval_users']} users evaluated)"
    )
    ax.legend(loc="upper left")
    ax.margins(y=0.15)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# -- entry point ------------------------------------------------------------------------------
def evaluate_recs(
    dataset: Path,
    protocol: str,
    *,
    seed: int = 0,
    out_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate the served feed engine and the peers side by side on one protocol.

    Parameters
    ----------
    dataset
        MovieLens folder or user/item/timestamp file (see :mod:`tastegraph.evaluation.recs.data`).
    protocol
        ``"loo"`` (HR@10, NDCG@10 over 1 + 99 sampled items) or ``"temporal"`` (Recall@20,
        NDCG@20 over the full catalog).
    seed
        Seeds the negative sampler and every model.
    out_dir
        Where the PNG bar chart goes (a new temporary folder when None).
    progress
        Log steps and print a results table to stderr (stdout stays free for JSON).

    Returns
    -------
    dict
        ``protocol``, ``dataset`` (path, n_users, n_items, n_interactions), ``split``, ``models``
        (one row per model: metrics, tuned ``params``, ``fit_seconds``), ``served`` (the row
        of the engine users get), ``best_peer``, ``served_vs_best_peer`` and
        ``offline_vs_best_peer`` (ratios on the primary metric), ``plot`` and ``seconds``.

    Raises
    ------
    InvalidInput
        Unknown protocol, unreadable or malformed data.
    MissingExtra
        ``implicit`` or ``matplotlib`` is not installed (``pip install 'tastegraph[eval]'``).
    """
    if protocol not in PROTOCOLS:
        raise InvalidInput(
            f"unknown protocol {protocol!r}", hint="use one of: " + ", ".join(PROTOCOLS)
        )
    # Checked before minutes of tuning, not when the first ALS fit or the plot needs them.
    require("implicit", extra="eval", purpose="The ALS and BPR peers of `tastegraph eval recs`")
    require("matplotlib", extra="eval", purpose="The plot of `tastegraph eval recs`")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=THREADS):
        return _evaluate(Path(dataset), protocol, seed, out_dir, progress)


def _evaluate(
    dataset: Path, protocol: str, seed: int, out_dir: Path | None, progress: bool
) -> dict[str, Any]:
    started = time.perf_counter()
    log: Callable[[str], None] = _logger(progress)
    data = load_interactions(dataset)
    log(f"loaded {data.n_interactions} interactions: {data.n_users} users, {data.n_items} items")
    split = make_split(data, protocol, seed)
    val = make_split(split.train, protocol, seed)  # tuning only ever sees training data
    log(f"{protocol}: {len(split.users)} test users, {len(val.users)} validation users")
    if len(split.users) == 0:
        why = (
            f"needs users with 2+ interactions and {N_NEGATIVES}+ items they never touched"
            if protocol == "loo"
            else "needs users active both before and after the time cut"
        )
        log(f"[yellow]no user can be evaluated: {protocol} {why}; every metric is 0")

    rows: list[dict[str, Any]] = []
    tuned: dict[str, dict[str, Any]] = {}
    for name in PEERS:
        t0 = time.perf_counter()
        grid = GRIDS[name]
        if len(grid) > 1 and len(val.users) > 0:
            point, _ = tune(name, grid, val, protocol, seed=seed, fixed=FIXED.get(name))
        else:
            point = grid[0]
        tuned[name] = point
        tune_s = time.perf_counter() - t0
        rows.append(_final(name, {**FIXED.get(name, {}), **point}, split, seed, tune_s, log))
    params = tastegraph_params(protocol, tuned)
    rows.append(_final("tastegraph", params, split, seed, 0.0, log, row=OFFLINE))
    rows.append(_final_served(split, log))

    primary = PRIMARY[protocol]
    by_name = {r["model"]: r for r in rows}
    best = max((by_name[p] for p in PEERS), key=lambda r: (r[primary], r[SECONDARY[protocol]]))

    def ratio(row: str) -> float | None:
        return _round(by_name[row][primary] / best[primary]) if best[primary] > 0 else None

    report: dict[str, Any] = {
        "protocol": protocol,
        "dataset": {
            "path": str(dataset),
            "n_users": data.n_users,
            "n_items": data.n_items,
            "n_interactions": data.n_interactions,
        },
        "split": _split_info(split),
        "models": rows,
        "served": SERVED,
        "best_peer": best["model"],
        "served_vs_best_peer": ratio(SERVED),
        "offline_vs_best_peer": ratio(OFFLINE),
        "seed": seed,
    }
    folder = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="tg-recs-"))
    report["plot"] = str(plot_report(report, folder / f"recs_{protocol}.png"))
    report["seconds"] = _round(time.perf_counter() - started)
    if progress:
        _print_table(report)
    return report


def _final(
    name: str,
    params: dict[str, Any],
    split: LooSplit | TemporalSplit,
    seed: int,
    tune_s: float,
    log: Callable[[str], None],
    *,
    row: str | None = None,
) -> dict[str, Any]:
    """Fit on the whole training split with the chosen params and measure on the test;
    ``row`` names the row (default: the model's name)."""
    if "seed" in make_model(name)._param_names():
        params = {**params, "seed": seed}
    t0 = time.perf_counter()
    model = _fit(make_model(name, **params), split.train)
    fit_s = time.perf_counter() - t0
    metrics = _measure(model, split)
    shown = {k: v for k, v in params.items() if k != "seed"}
    return _row(row or name, metrics, shown, fit_s, tune_s, log)


def _final_served(split: LooSplit | TemporalSplit, log: Callable[[str], None]) -> dict[str, Any]:
    """The served engine under the server's settings: nothing is tuned, so no validation."""
    t0 = time.perf_counter()
    model = ServedFeed().fit(split.train)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics = _measure(model, split)
    out = _row(SERVED, metrics, model.get_params(), fit_s, 0.0, log)
    out["serve_seconds"] = _round(time.perf_counter() - t1)
    return out


def _row(
    name: str,
    metrics: dict[str, float],
    params: dict[str, Any],
    fit_s: float,
    tune_s: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    log(
        f"{name}: "
        + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        + f" (tuning {tune_s:.1f}s, fit {fit_s:.1f}s)"
    )
    return {
        "model": name,
        **{k: _round(v) for k, v in metrics.items()},
        "params": params,
        "fit_seconds": _round(fit_s),
        "tune_seconds": _round(tune_s),
    }


def _split_info(split: LooSplit | TemporalSplit) -> dict[str, Any]:
    info: dict[str, Any] = {
        "n_train": split.train.n_interactions,
        "n_eval_users": len(split.users),
    }
    if isinstance(split, LooSplit):
        info["n_negatives"] = split.candidates.shape[1] - 1
    else:
        info["n_test_interactions"] = int(sum(len(t) for t in split.truth))
        info["cutoff_timestamp"] = split.cutoff
    return info


def _logger(progress: bool) -> Callable[[str], None]:
    if not progress:
        return lambda message: None
    from rich.console import Console

    console = Console(stderr=True)
    return lambda message: console.log(message)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tastegraph.evaluation.recs.evaluate --dataset PATH --protocol loo|temporal``.

    ``--json`` prints the report as JSON.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="tastegraph eval recs", description=__doc__)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--protocol", choices=[*PROTOCOLS, "both"], default="loo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress or table on stderr")
    args = parser.parse_args(argv)
    protocols = list(PROTOCOLS) if args.protocol == "both" else [args.protocol]
    try:
        reports = [
            evaluate_recs(
                args.dataset, p, seed=args.seed, out_dir=args.out_dir, progress=not args.quiet
            )
            for p in protocols
        ]
    except TastegraphError as exc:
        print(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), file=sys.stderr)
        return 2
    if args.json:
        out = reports[0] if len(reports) == 1 else reports
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
