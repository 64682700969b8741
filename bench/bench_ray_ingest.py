"""Ingest on a local Ray: 1 actor against 2, and against the in-process pipeline, same cores.

    python bench/bench_ray_ingest.py --images ../shared/data/clothing/images --n 400 --json

Runs the same files, each on a fresh data dir (model exports shared through --models), through:
  local    `tastegraph ingest` (the in-process pipeline: decode workers, model, writer thread)
  ray1     `tastegraph ingest --ray --ray-actors 1` on a local Ray with every core
  ray2     the same with 2 encoder actors
and prints, for each: images/s over the whole run (``e2e``, Ray start-up and actor model
loading included), images/s after the first batch came back (``steady``), the CPU seconds per
image of every process involved (this one, the decode workers, and on Ray the raylet, GCS and
workers: comparable between runs on a busy machine, where wall figures are not), and for Ray
the start-up (``ray_start_s``: starting Ray and importing Ray Data; ``actor_start_s``: the
slowest actor's model loading; ``first_batch_s``: until the first encoded batch came back).
Ratios:
``ray2_over_ray1`` (target >= 1.7, steady) and ``ray2_over_local`` (the overhead of Ray).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
_TICK = os.sysconf("SC_CLK_TCK")


def _tree_cpu() -> float:
    """CPU seconds of this process and every process below it (Linux /proc): those alive now,
    and the children that ended and were waited for (the local runner's decode workers)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
    mine, total = {os.getpid()}, 0.0
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                changed = True
    for pid in mine:
        total += cpu.get(pid, 0.0)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + ended.ru_utime + ended.ru_stime


def _one(settings: Any, files: list[Path], actors: int | None) -> dict[str, Any]:
    """One ingest of ``files`` on a fresh data dir: locally (``actors`` None) or on Ray."""
    from tastegraph.app import build

    app = build(settings)
    app.encoders.text.encode(["warm up"])  # models built here before the clock, as for ingest
    folder = Path(settings.data_dir) / "src"
    folder.mkdir()
    for f in files:
        (folder / f.name).symlink_to(f.resolve())
    runner = None
    ray = None
    init_s = 0.0
    if actors is not None:
        import ray as ray_module

        from tastegraph.catalog.pipeline.ray_runner import RayRunner
        from tastegraph.catalog.pipeline.ray_session import RayOptions

        ray = ray_module
        # Started here, not by the runner, so that its processes' CPU is read before they end.
        t_init = time.perf_counter()
        ray.init(
            object_store_memory=256 * 1024 * 1024,
            include_dashboard=False,
            log_to_driver=False,
        )
        init_s = time.perf_counter() - t_init
        runner = RayRunner(RayOptions(actors=actors))
    cpu0, t0 = _tree_cpu(), time.perf_counter()
    try:
        report = app.catalog.ingest(str(folder), progress=False, runner=runner)
        cpu = _tree_cpu() - cpu0  # read before Ray's processes end
        wall = time.perf_counter() - t0
    finally:
        if ray is not None:
            ray.shutdown()
        app.close()
    assert report.added == len(files), report.to_dict()
    tm = report.timings
    first = tm.get("first_batch", 0.0)
    batch = settings.models.batch_size
    after_first = report.seconds - first - tm.get("ray_start", 0.0) - tm.get("setup", 0.0)
    out = {
        "e2e_per_s": round(report.images_per_s, 1),
        "cpu_s_per_image": round(cpu / len(files), 4),
        "wall_s": round(wall, 2),
        "stages_s": tm,
    }
    if actors is not None:
        out["steady_per_s"] = round((len(files) - batch) / after_first, 1) if after_first else 0.0
        out["ray_start_s"] = round(init_s + tm.get("ray_start", 0.0), 3)
        out["actor_start_s"] = tm.get("actor_start")
        out["first_batch_s"] = first
    return out


def run(images: Path, n: int, models_dir: Path | None) -> dict[str, Any]:
    from tastegraph.settings import Settings

    files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:n]
    if len(files) < n:
        console.print(f"only {len(files)} images found")
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-ray-"))
    res: dict[str, Any] = {"images": len(files), "cores": os.cpu_count()}
    try:
        for name, actors in (("local", None), ("ray1", 1), ("ray2", 2)):
            data = tmp / name
            data.mkdir()
            if models_dir:
                (data / "models").symlink_to(models_dir.resolve(), target_is_directory=True)
            console.print(f"{name} …")
            res[name] = _one(Settings(data_dir=data, whiten_min_pins=10**9), files, actors)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r1, r2, loc = res["ray1"], res["ray2"], res["local"]
    res["ray2_over_ray1"] = round(r2["steady_per_s"] / r1["steady_per_s"], 2)
    res["ray2_over_ray1_e2e"] = round(r2["e2e_per_s"] / r1["e2e_per_s"], 2)
    res["ray2_over_local"] = round(r2["e2e_per_s"] / loc["e2e_per_s"], 2)
    res["ray2_cpu_over_local"] = round(r2["cpu_s_per_image"] / loc["cpu_s_per_image"], 2)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=Path, default=Path("../shared/data/clothing/images"))
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--models", type=Path, default=Path(".cache/models"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run(a.images, a.n, a.models if a.models.is_dir() else None)
    t = Table("measure", "value")
    for k, v in res.items():
        t.add_row(k, json.dumps(v) if isinstance(v, dict) else str(v))
    console.print(t)
    if a.json:
        sys.stdout.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
