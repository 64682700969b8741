"""Home feed and related pins over HTTP, under steady load from a second process.

Issue target: with 100k pins, 10k users and 1M events on two cores, home feed p99 <= 50 ms and
related pins p99 <= 20 ms under a steady load from a second process; ``tastegraph train`` on the
same events in <= 5 min.

Steps (everything in a temporary data dir that is removed at the end):

1. build: ``pins`` synthetic pins written through the store (no images): clustered random
   1280-d unit vectors in the "image" space (the encoder's raw dimension), one cluster per 500
   pins, boards nested in clusters, a label per pair of clusters. The PCA-whitening projection is
   then fitted as ingest would (``app.catalog.fit_projection()``, default ``image_dim`` 256) and the
   indexes synced, so the server and the feed engine work on 256-d vectors, as in production.
   ``users`` users (bulk SQL) who each like one to three clusters; about ``events`` events
   (bulk SQL) in logged home-feed requests of 10 impressions with positions, half from the
   person's clusters and half from a Zipf-popular head; closeups, clicks, dwell and saves on the
   relevant ones, hides on some others; time-sorted over the last 30 days.
2. train: ``tastegraph train --data D`` as a subprocess (wall time, target <= 300 s); the server
   then serves with the learned ranker, as in production.
3. serve: ``tastegraph serve --data D --port P``; wait for ``GET /ready`` == 200 (polled), then
   time the first ``GET /users/1/feed`` (the engine builds and replays the event log).
4. load: a second process (spawned) with ``conns`` keep-alive httpx connections (one thread
   each, request i on connection i mod conns) sends an open-loop, fixed-rate mix (70%
   ``/users/{u}/feed?n=25``, 30% ``/pins/{p}/related?n=20``) for ``duration`` seconds. Latency
   is send -> response; "sched p99" is measured from the scheduled send time, so it also counts
   time a request waited behind a late one on its connection (coordinated omission): a server
   that cannot keep up with the rate shows it there. Before it starts, the bench waits (up to
   5 min) for the machine's 1-minute load average to drop below ``--max-load`` and records the
   load average before and after: on two cores, other jobs move the tail more than the server.
   With ``--rates R1,R2,...`` the same server takes one such run per rate (a latency curve,
   plotted as ``feed_http_latency.png`` under ``--out``).
5. per run, the server's CPU per request (user + system seconds of the server process and its
   workers over the requests answered, from ``/proc``: robust while other jobs load the
   machine), requests/s per core of server CPU, and the client's own CPU per request; after the
   last run, each server process's RSS and PSS (``/proc/PID/smaps_rollup``) and pins and events
   per GiB of PSS (whole-process figures: the fixed part included).

Usage::

    .venv/bin/python bench/bench_feed_http.py                      # 100k x 10k x 1M, 60 s @ 30/s
    .venv/bin/python bench/bench_feed_http.py --pins 5000 --users 500 --events 50000 --duration 10
    .venv/bin/python bench/bench_feed_http.py --json > feed_http.json
    # build once, keep it, and measure again later without rebuilding (steps 2-4 only)
    .venv/bin/python bench/bench_feed_http.py --no-train --data /tmp/tg-feed-100k
    # the issue-17 figures: a latency curve over offered load, two workers, one line
    .venv/bin/python bench/bench_feed_http.py --data /tmp/tg-feed-100k --no-train --workers 2 \
        --conns 16 --rates 30,60,90,120,150 --duration 30 --out /tmp/feed-curve --json

With ``--data DIR`` the installation is built into ``DIR`` on the first run and kept; later runs
with the same ``DIR`` (and the same sizes and seed) reuse it. A model trained there by an earlier
run stays published, so pass ``--no-train`` to a fresh ``DIR`` to measure the untrained engine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

DAY = 86400.0
RAW_DIM = 1280
TARGETS = {"feed_p99_ms": 50.0, "related_p99_ms": 20.0, "train_s": 300.0}
FEED_SHARE = 0.7
REQ_SIZE = 10


def log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# 1. the synthetic installation


def build_installation(
    data: Path, n_pins: int, n_users: int, n_events: int, seed: int, quiet: bool
) -> dict[str, Any]:
    import sqlalchemy as sa

    from tastegraph.app import build
    from tastegraph.settings import Settings
    from tastegraph.store import NewPin
    from tastegraph.store import schema as t

    rng = np.random.default_rng(seed)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    app = build(Settings(data_dir=data, whiten_min_pins=10**9))
    model_id = app.encoders.image.model_id
    times["open_s"] = time.perf_counter() - t0

    # Pins: clustered unit vectors, written in batches of 5000 (never all 1280-d at once).
    n_clusters = max(8, n_pins // 500)
    centres = rng.standard_normal((n_clusters, RAW_DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cluster = rng.integers(0, n_clusters, n_pins)
    sub_board = rng.integers(0, 25, n_pins)
    t0 = time.perf_counter()
    ids = np.zeros(n_pins, np.int64)
    for start in range(0, n_pins, 5000):
        c = cluster[start : start + 5000]
        v = centres[c] + (0.8 / np.sqrt(RAW_DIM)) * rng.standard_normal((len(c), RAW_DIM)).astype(
            np.float32
        )
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        batch = [
            NewPin(
                content_hash=f"{start + j:064x}",
                source=f"syn{start + j}",
                vectors={"image": (model_id, v[j])},
                board=f"board-{int(c[j])}-{int(sub_board[start + j])}",
                labels=[(f"label-{int(c[j]) // 2}", 0.9)],
                title=f"synthetic pin {start + j} of cluster {int(c[j])}",
            )
            for j in range(len(c))
        ]
        got = app.store.add_pins(batch)
        ids[start : start + len(c)] = [p for p, _ in got]
        log(f"pins {start + len(c)}/{n_pins}", quiet)
    times["pins_s"] = time.perf_counter() - t0

    # Whitening as ingest does it (256-d index space), then the indexes, outside the server.
    t0 = time.perf_counter()
    app.settings.models.whiten_min_pins = 16
    fitted = app.catalog.fit_projection()
    times["projection_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    app.indexes.sync(save=True)
    times["index_sync_s"] = time.perf_counter() - t0
    log(f"projection fitted={fitted}, indexes synced", quiet)

    # Users, bulk.
    t0 = time.perf_counter()
    now_iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    with app.store.write() as conn:
        conn.execute(
            t.users.insert(),
            [
                {"handle": f"u{i}", "name": f"User {i}", "created_at": now_iso}
                for i in range(n_users)
            ],
        )
        user_ids = np.array(
            [r[0] for r in conn.execute(sa.select(t.users.c.id).order_by(t.users.c.id))], np.int64
        )
    times["users_s"] = time.perf_counter() - t0

    # Events.
    t0 = time.perf_counter()
    ev = make_events(rng, ids, cluster, n_clusters, user_ids, n_events)
    times["events_gen_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = len(ev["user"])
    kinds = ev["kind_names"]
    chunk = 50_000
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        rows = [
            {
                "key": f"syn-{start + j}",
                "user_id": u,
                "pin_id": p,
                "kind": kinds[k],
                "ts": ts,
                "dwell_ms": d,
                "surface": "home",
                "position": None if pos < 0 else pos,
                "request_id": f"req-{r}",
            }
            for j, (u, p, k, ts, d, pos, r) in enumerate(
                zip(
                    ev["user"][sl].tolist(),
                    ev["pin"][sl].tolist(),
                    ev["kind"][sl].tolist(),
                    ev["ts"][sl].tolist(),
                    ev["dwell"][sl].tolist(),
                    ev["position"][sl].tolist(),
                    ev["request"][sl].tolist(),
                    strict=True,
                )
            )
        ]
        with app.store.write() as conn:
            conn.execute(t.events.insert(), rows)
        if (start // chunk) % 4 == 3 or start + chunk >= n:
            log(f"events {min(start + chunk, n)}/{n}", quiet)
    times["events_insert_s"] = time.perf_counter() - t0
    mix = {name: int(np.count_nonzero(ev["kind"] == i)) for i, name in enumerate(kinds)}
    app.close()
    return {
        "times": {k: round(v, 2) for k, v in times.items()},
        "pins": n_pins,
        "users": len(user_ids),
        "events": n,
        "event_mix": mix,
        "clusters": n_clusters,
        "pin_ids": ids,
        "user_ids": user_ids,
    }


def make_events(
    rng: np.random.Generator,
    pin_ids: np.ndarray,
    cluster: np.ndarray,
    n_clusters: int,
    user_ids: np.ndarray,
    n_events: int,
) -> dict[str, Any]:
    """About ``n_events`` events in logged requests of REQ_SIZE impressions (vectorised)."""
    kind_names = ("impression", "closeup", "click", "save", "hide", "dwell")
    _, close_k, click_k, save_k, hide_k, dwell_k = range(6)
    n_users = len(user_ids)
    # Tastes: each user likes 1-3 clusters (padded by repetition to 3 columns).
    n_like = rng.integers(1, 4, n_users)
    likes = rng.integers(0, n_clusters, (n_users, 3))
    likes[n_like < 2, 1] = likes[n_like < 2, 0]
    likes[n_like < 3, 2] = likes[n_like < 3, 0]
    members = [np.flatnonzero(cluster == c) for c in range(n_clusters)]
    sizes = np.array([len(m) for m in members])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.concatenate(members)
    popular = rng.permutation(len(pin_ids))

    # Roughly 0.5 * 0.6 engagement events per relevant impression: about 13 events per request.
    n_req = max(1, int(n_events / (REQ_SIZE * 1.3)))
    req_user = rng.integers(0, n_users, n_req)
    now = time.time()
    req_ts = np.sort(now - rng.uniform(60.0, 30 * DAY, n_req))
    u = np.repeat(req_user, REQ_SIZE)
    personal = rng.random(len(u)) < 0.5
    c = likes[u, rng.integers(0, 3, len(u))]
    c = np.where(sizes[c] > 0, c, cluster[0])
    row_personal = flat[offsets[c] + (rng.random(len(u)) * sizes[c]).astype(np.int64)]
    zipf = np.minimum(rng.zipf(1.3, len(u)) - 1, len(pin_ids) - 1)
    row = np.where(personal, row_personal, popular[zipf])
    relevant = (cluster[row][:, None] == likes[u]).any(axis=1)
    imp_ts = np.repeat(req_ts, REQ_SIZE) + np.tile(np.arange(REQ_SIZE) * 0.2, n_req)
    pos = np.tile(np.arange(REQ_SIZE), n_req)
    req = np.repeat(np.arange(n_req), REQ_SIZE)

    # Engagement on impressions: relevant ones get closeup/click/save/dwell, others a few hides.
    r = rng.random(len(u))
    eng_kind = np.full(len(u), -1, np.int64)
    eng_kind[relevant & (r < 0.12)] = save_k
    eng_kind[relevant & (r >= 0.12) & (r < 0.30)] = click_k
    eng_kind[relevant & (r >= 0.30) & (r < 0.45)] = close_k
    eng_kind[relevant & (r >= 0.45) & (r < 0.60)] = dwell_k
    eng_kind[~relevant & (r < 0.04)] = hide_k
    eng_kind[~relevant & (r >= 0.04) & (r < 0.08)] = dwell_k
    e = np.flatnonzero(eng_kind >= 0)
    dwell = np.zeros(len(e), np.float64)
    is_dwell = eng_kind[e] == dwell_k
    dwell[is_dwell] = np.where(
        relevant[e][is_dwell],
        rng.uniform(3000, 40000, int(is_dwell.sum())),
        rng.uniform(200, 2500, int(is_dwell.sum())),
    )
    all_user = np.concatenate([u, u[e]])
    all_row = np.concatenate([row, row[e]])
    all_kind = np.concatenate([np.zeros(len(u), np.int64), eng_kind[e]])
    all_ts = np.concatenate([imp_ts, imp_ts[e] + rng.uniform(1.0, 60.0, len(e))])
    all_dwell = np.concatenate([np.zeros(len(u)), dwell])
    all_pos = np.concatenate([pos, pos[e]])
    all_req = np.concatenate([req, req[e]])
    order = np.argsort(all_ts, kind="stable")[:n_events]  # time order, trimmed to n_events
    return {
        "kind_names": kind_names,
        "user": user_ids[all_user[order]],
        "pin": pin_ids[all_row[order]],
        "kind": all_kind[order],
        "ts": all_ts[order],
        "dwell": all_dwell[order],
        "position": all_pos[order],
        "request": all_req[order],
    }


_MARKER = "bench_feed_http.json"


def _shape(args: argparse.Namespace) -> dict[str, int]:
    return {"pins": args.pins, "users": args.users, "events": args.events, "seed": args.seed}


def save_installation(
    data: Path, args: argparse.Namespace, built: dict[str, Any], pins: list[int], users: list[int]
) -> None:
    """Record what was built in ``data`` so a later run can reuse it."""
    blob = {"shape": _shape(args), "build": built, "pin_ids": pins, "user_ids": users}
    (data / _MARKER).write_text(json.dumps(blob))


def reuse_installation(
    data: Path, args: argparse.Namespace
) -> tuple[dict[str, Any] | None, list[int], list[int]]:
    """The installation a previous run built in ``data`` (None when there is none)."""
    marker = data / _MARKER
    if not marker.is_file():
        if data.exists() and any(data.iterdir()):
            raise SystemExit(f"{data} is not empty and holds no bench installation")
        return None, [], []
    blob = json.loads(marker.read_text())
    if blob["shape"] != _shape(args):
        raise SystemExit(f"{data} holds an installation of {blob['shape']}, not {_shape(args)}")
    return {**blob["build"], "reused": True}, blob["pin_ids"], blob["user_ids"]


# --------------------------------------------------------------------------------------------
# 2-3. train, serve


def run_train(data: Path, timeout: float) -> dict[str, Any]:
    exe = Path(sys.executable).with_name("tastegraph")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(exe), "train", "--data", str(data), "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"wall_s": round(wall, 2), "rc": proc.returncode}
    try:
        res = json.loads(proc.stdout)
        out["report"] = {
            k: v for k, v in res.items() if isinstance(v, int | float | str) and len(str(v)) < 80
        }
    except ValueError:
        out["stderr_tail"] = proc.stderr[-2000:]
    return out


def wait_for_quiet(max_load: float, quiet: bool, timeout: float = 300.0) -> float:
    """Wait until the 1-minute load average is below ``max_load`` (polled every 20 s, at most
    ``timeout``; 0 disables): other jobs on a small machine skew the tail. Returns the wait."""
    t0 = time.perf_counter()
    while max_load > 0 and os.getloadavg()[0] >= max_load:
        if time.perf_counter() - t0 >= timeout:
            log(f"load average still {os.getloadavg()[0]:.2f}; measuring anyway", quiet)
            break
        log(f"load average {os.getloadavg()[0]:.2f} >= {max_load}; waiting", quiet)
        time.sleep(20.0)
    return round(time.perf_counter() - t0, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants (``--workers N``: uvicorn's supervisor and its workers)."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return sorted(out)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds these processes have used (Linux ``/proc``; 0 elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def memory(pids: list[int]) -> list[dict[str, Any]]:
    """RSS and PSS (MiB) of each process, from ``/proc/PID/smaps_rollup`` (Linux)."""
    out = []
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
        except OSError:
            continue
        kb = {
            line.split(":")[0]: int(line.split()[1])
            for line in text.splitlines()[1:]
            if line.split(":")[0] in ("Rss", "Pss")
        }
        out.append(
            {
                "pid": pid,
                "cmd": cmd.strip(),
                "rss_mib": round(kb.get("Rss", 0) / 1024, 1),
                "pss_mib": round(kb.get("Pss", 0) / 1024, 1),
            }
        )
    return out


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
    import httpx

    t0 = time.perf_counter()
    deadline = t0 + timeout
    with httpx.Client(timeout=5.0) as client:
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                if client.get(f"{base}/ready").status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"server not ready after {timeout:.0f} s")


# --------------------------------------------------------------------------------------------
# 4. the load client (a second process)


def load_client(
    base: str,
    rate: float,
    duration: float,
    user_ids: list[int],
    pin_ids: list[int],
    seed: int,
    conns: int,
    queue: Any,
) -> None:
    import httpx

    rng = np.random.default_rng(seed)
    n_total = int(rate * duration)
    is_feed = rng.random(n_total) < FEED_SHARE
    users = rng.choice(user_ids, n_total)
    pins = rng.choice(pin_ids, n_total)
    interval = 1.0 / rate
    rec: list[tuple[str, float, float, int]] = []
    lock = threading.Lock()
    t0 = time.perf_counter() + 0.2
    hard_stop = t0 + duration + 15.0

    def worker(w: int) -> None:
        # Worker w sends requests w, w + conns, ... at their scheduled times on its own
        # keep-alive connection: a slow response delays only that worker, not the offered rate.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(base_url=base, timeout=10.0, limits=limits) as client:
            for i in range(w, n_total, conns):
                sched = t0 + i * interval
                now = time.perf_counter()
                if now > hard_stop:
                    break
                if sched > now:
                    time.sleep(sched - now)
                if is_feed[i]:
                    ep, url = "feed", f"/users/{int(users[i])}/feed?n=25"
                else:
                    ep, url = "related", f"/pins/{int(pins[i])}/related?n=20"
                start = time.perf_counter()
                try:
                    status = client.get(url).status_code
                except httpx.HTTPError:
                    status = -1
                end = time.perf_counter()
                with lock:
                    rec.append((ep, end - start, end - sched, status))

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(conns)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=max(1.0, hard_stop + 15.0 - time.perf_counter()))
    elapsed = time.perf_counter() - t0
    queue.put(
        {"records": rec, "elapsed": elapsed, "planned": n_total, "cpu_s": time.process_time()}
    )


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sent": len(res["records"]),
        "planned": res["planned"],
        "elapsed_s": round(res["elapsed"], 2),
        "achieved_rps": round(len(res["records"]) / max(res["elapsed"], 1e-9), 2),
    }
    for ep in ("feed", "related"):
        rows = [r for r in res["records"] if r[0] == ep]
        ok = np.array([r[1] for r in rows if r[3] == 200]) * 1000
        sched = np.array([r[2] for r in rows if r[3] == 200]) * 1000
        errors = [r[3] for r in rows if r[3] != 200]
        st: dict[str, Any] = {"n": len(rows), "errors": len(errors)}
        if errors:
            st["error_statuses"] = sorted({int(e) for e in errors})
        if len(ok):
            for q in (50, 95, 99):
                st[f"p{q}_ms"] = round(float(np.percentile(ok, q)), 2)
            st["max_ms"] = round(float(ok.max()), 2)
            st["sched_p99_ms"] = round(float(np.percentile(sched, 99)), 2)
        out[ep] = st
    return out


# --------------------------------------------------------------------------------------------


def load_phase(
    base: str,
    rate: float,
    args: argparse.Namespace,
    user_ids: list[int],
    pin_ids: list[int],
    server_pids: list[int],
) -> dict[str, Any]:
    """One fixed-rate load run from a second process; latency, and the server's CPU per
    request (all its processes' CPU seconds over the requests answered)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    client_proc = ctx.Process(
        target=load_client,
        args=(base, rate, args.duration, user_ids, pin_ids, args.seed + 1, args.conns, queue),
    )
    load_before = os.getloadavg()[0]
    cpu0 = cpu_seconds(server_pids)
    client_proc.start()
    res = queue.get(timeout=args.duration + 120)
    cpu1 = cpu_seconds(server_pids)
    client_proc.join(timeout=30)
    out = summarise(res)
    out["target_rps"] = rate
    out["conns"] = args.conns
    out["mix"] = {"feed": FEED_SHARE, "related": round(1 - FEED_SHARE, 2)}
    out["loadavg_before"] = round(load_before, 2)
    out["loadavg_after"] = round(os.getloadavg()[0], 2)
    answered = max(1, out["sent"])
    out["server_cpu_s"] = round(cpu1 - cpu0, 2)
    out["server_cpu_ms_per_request"] = round(1000.0 * (cpu1 - cpu0) / answered, 2)
    out["client_cpu_ms_per_request"] = round(1000.0 * res["cpu_s"] / answered, 2)
    # Requests per second one core of server CPU answers, at this mix (the client not counted).
    out["server_rps_per_core"] = round(answered / max(cpu1 - cpu0, 1e-9), 1)
    return out


def plot_curve(runs: list[dict[str, Any]], out_dir: Path, quiet: bool) -> str | None:
    """p50/p95/p99 against offered load, per endpoint, as a PNG in ``out_dir``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install 'tastegraph[eval]'): no plot", quiet)
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    offered = [r["target_rps"] for r in runs]
    for ax, ep, target in zip(
        axes, ("feed", "related"), (TARGETS["feed_p99_ms"], TARGETS["related_p99_ms"]), strict=True
    ):
        for q, style in (("p50", "-o"), ("p95", "-s"), ("p99", "-^")):
            ax.plot(offered, [r[ep].get(f"{q}_ms", np.nan) for r in runs], style, label=q)
        ax.axhline(target, color="grey", linestyle="--", label=f"target p99 {target:.0f} ms")
        ax.set_yscale("log")
        ax.set_title(f"{ep} latency against offered load")
        ax.set_xlabel("offered requests/s (70% feed, 30% related)")
        ax.set_ylabel("ms")
        ax.legend()
    fig.tight_layout()
    path = out_dir / "feed_http_latency.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    log(f"plot: {path}", quiet)
    return str(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pins", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--duration", type=float, default=60.0, help="load seconds")
    ap.add_argument("--rate", type=float, default=30.0, help="target requests per second")
    ap.add_argument(
        "--rates",
        default=None,
        help="comma-separated offered rates, one load run each on the same server (a latency "
        "curve, plotted as feed_http_latency.png under --out)",
    )
    ap.add_argument("--conns", type=int, default=4, help="client connections (threads)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-train", action="store_true", help="skip `tastegraph train`")
    ap.add_argument(
        "--workers", type=int, default=1, help="server processes (`tastegraph serve --workers`)"
    )
    ap.add_argument("--ready-timeout", type=float, default=900.0)
    ap.add_argument(
        "--max-load",
        type=float,
        default=2.5,
        help="before the load phase, wait (up to 5 min) for the 1-min load average to drop "
        "below this (0: do not wait)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument(
        "--out",
        default=None,
        help="folder for the latency plot (default: the --data dir, else the working dir)",
    )
    ap.add_argument(
        "--data",
        default=None,
        help="build the installation into this folder and keep it; reuse it if already built",
    )
    args = ap.parse_args()
    if not (1 <= args.duration <= 600 and 0.1 <= args.rate <= 500 and 1 <= args.conns <= 32):
        ap.error("--duration must be in 1..600, --rate in 0.1..500, --conns in 1..32")
    if not 1 <= args.workers <= 16:
        ap.error("--workers must be in 1..16")
    try:
        rates = [float(r) for r in args.rates.split(",")] if args.rates else [args.rate]
    except ValueError:
        ap.error(f"--rates must be numbers separated by commas, not {args.rates!r}")
    if not all(0.1 <= r <= 500 for r in rates):
        ap.error("every rate in --rates must be in 0.1..500")
    quiet = False
    result: dict[str, Any] = {
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": {
            "cpus": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "python": platform.python_version(),
        },
        "targets": TARGETS,
    }
    keep = args.data is not None
    data = Path(args.data) if keep else Path(tempfile.mkdtemp(prefix="tg-bench-http-"))
    server: subprocess.Popen[bytes] | None = None
    try:
        built, pin_ids, user_ids = reuse_installation(data, args) if keep else (None, [], [])
        if built is None:
            log(f"building in {data}", quiet)
            data.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            built = build_installation(data, args.pins, args.users, args.events, args.seed, quiet)
            pin_ids = built.pop("pin_ids").tolist()
            user_ids = built.pop("user_ids").tolist()
            built["total_s"] = round(time.perf_counter() - t0, 2)
            if keep:
                save_installation(data, args, built, pin_ids, user_ids)
            log(f"built: {built['times']}", quiet)
        else:
            log(f"reusing the installation in {data}", quiet)
        result["build"] = built

        if not args.no_train:
            log("tastegraph train ...", quiet)
            result["train"] = run_train(data, timeout=1800)
            log(f"train: {result['train']}", quiet)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        exe = Path(sys.executable).with_name("tastegraph")
        server_log = open(data / "server.log", "wb")  # noqa: SIM115 - closed with the dir
        server = subprocess.Popen(
            [
                *(str(exe), "serve", "--data", str(data), "--port", str(port)),
                *("--host", "127.0.0.1", "--workers", str(args.workers)),
            ],
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        ready_s = wait_ready(base, server, args.ready_timeout)
        result["server"] = {"ready_s": round(ready_s, 2)}
        log(f"ready after {ready_s:.1f} s; warming the feed engine", quiet)

        import httpx

        with httpx.Client(base_url=base, timeout=args.ready_timeout) as client:
            t0 = time.perf_counter()
            r = client.get(f"/users/{user_ids[0]}/feed?n=25")
            warm = time.perf_counter() - t0
            result["server"]["engine_warmup_s"] = round(warm, 2)
            result["server"]["warm_status"] = r.status_code
            if r.status_code != 200:
                raise RuntimeError(f"warm-up feed call failed: {r.status_code} {r.text[:300]}")
            result["server"]["model"] = r.json().get("model")
            t0 = time.perf_counter()
            r = client.get(f"/pins/{pin_ids[0]}/related?n=20")
            result["server"]["first_related_s"] = round(time.perf_counter() - t0, 3)
        # With --workers N each request on a new connection may reach another worker: warm
        # them all (each built its engine at start-up; this pays for first-call caches).
        for i in range(8 * args.workers):
            with httpx.Client(base_url=base, timeout=args.ready_timeout) as one:
                one.get(f"/users/{user_ids[i % len(user_ids)]}/feed?n=25")
                one.get(f"/pins/{pin_ids[i % len(pin_ids)]}/related?n=20")
        pids = process_tree(server.pid)
        result["server"]["processes"] = len(pids)
        result["runs"] = []
        for rate in rates:
            result["server"]["loadavg_wait_s"] = wait_for_quiet(args.max_load, quiet)
            log(f"load {rate}/s for {args.duration} s", quiet)
            result["runs"].append(
                load_phase(base, rate, args, user_ids, pin_ids, process_tree(server.pid))
            )
            run = result["runs"][-1]
            log(
                f"{rate}/s: achieved {run['achieved_rps']}, feed p99 "
                f"{run['feed'].get('p99_ms')} ms, related p99 {run['related'].get('p99_ms')} ms, "
                f"server CPU {run['server_cpu_ms_per_request']} ms/request",
                quiet,
            )
        result["load"] = result["runs"][-1]
        procs = memory(process_tree(server.pid))
        serving = [p for p in procs if p["rss_mib"] > 100] or procs  # not the supervisor
        result["memory"] = {
            "processes": procs,
            "pins_per_gib": [
                round(built["pins"] / (p["pss_mib"] / 1024)) for p in serving if p["pss_mib"]
            ],
            "events_per_gib": [
                round(built["events"] / (p["pss_mib"] / 1024)) for p in serving if p["pss_mib"]
            ],
        }
        load = result["load"]
        result["pass"] = {
            "feed": load["feed"].get("p99_ms", 1e9) <= TARGETS["feed_p99_ms"],
            "related": load["related"].get("p99_ms", 1e9) <= TARGETS["related_p99_ms"],
            "no_errors": all(
                r["feed"]["errors"] + r["related"]["errors"] == 0 for r in result["runs"]
            ),
            "train": result.get("train", {}).get("wall_s", 1e9) <= TARGETS["train_s"],
        }
        if len(rates) > 1:
            out_dir = Path(args.out) if args.out else (data if keep else Path.cwd())
            out_dir.mkdir(parents=True, exist_ok=True)
            result["plot"] = plot_curve(result["runs"], out_dir, quiet)
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
        if server is not None:
            tail = (data / "server.log").read_text(errors="replace")[-1500:]
            if "Traceback" in tail or "ERROR" in tail:
                result["server_log_tail"] = tail
        if not keep:
            shutil.rmtree(data, ignore_errors=True)

    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        print_table(result)
    return 0


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    b = result["build"]
    c = result["config"]
    tab = Table(
        title=(
            f"HTTP feed bench: {b['pins']} pins, {b['users']} users, {b['events']} events; "
            f"{c['duration']} s per rate, {c['workers']} worker(s)"
        )
    )
    for col in (
        "offered",
        "achieved",
        "endpoint",
        "n",
        "errors",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "sched p99",
        "server CPU ms/req",
        "req/s per core",
    ):
        tab.add_column(col, justify="right")
    for run in result["runs"]:
        for ep in ("feed", "related"):
            s = run[ep]
            tab.add_row(
                str(run["target_rps"]) if ep == "feed" else "",
                str(run["achieved_rps"]) if ep == "feed" else "",
                ep,
                str(s["n"]),
                str(s["errors"]),
                *(
                    str(s.get(k, "-"))
                    for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "sched_p99_ms")
                ),
                str(run["server_cpu_ms_per_request"]) if ep == "feed" else "",
                str(run["server_rps_per_core"]) if ep == "feed" else "",
            )
    con = Console()
    con.print(tab)
    srv = result["server"]
    con.print(
        f"targets: feed p99 <= {TARGETS['feed_p99_ms']:.0f} ms, related p99 <= "
        f"{TARGETS['related_p99_ms']:.0f} ms; ready {srv['ready_s']} s; engine warm-up "
        f"{srv['engine_warmup_s']} s; model {srv.get('model')}"
    )
    for p in result["memory"]["processes"]:
        con.print(f"process {p['pid']}: RSS {p['rss_mib']} MiB, PSS {p['pss_mib']} MiB")
    mem = result["memory"]
    con.print(
        f"per GiB of a serving process: pins {mem['pins_per_gib']}, events {mem['events_per_gib']}"
    )
    if "train" in result:
        con.print(f"train: {result['train']['wall_s']} s (target <= {TARGETS['train_s']:.0f})")
    con.print(f"build: {b['times']} (total {b.get('total_s')} s)")
    if result.get("plot"):
        con.print(f"plot: {result['plot']}")
    con.print(f"pass: {result['pass']}")


if __name__ == "__main__":
    sys.exit(main())
