"""Ingest throughput, end to end, against its ideal and a naive loop, in one run.

    python bench/bench_ingest.py --images ../shared/data/clothing/images --n 800

Prints (and with --json emits) images/s for:
  D      decode-only: read + JPEG decode (draft mode) + resize/crop to the model input, 2 processes
  F      the fastest raw forward of the same model (batches of 32 already-decoded pixels; with
         --max-aspect > 1, full batches of each input shape, weighted by the photos' shape mix)
  ideal  1 / (1/D + 1/F): both cores shared between decoding and the model
  e2e    `tastegraph ingest` work: decode -> encode (image, text, ConSE) -> store -> index
         (e2e_stages_s: seconds per pipeline stage; the stages overlap; one-off model work,
         e.g. label vectors on a fresh data dir, is ingest's setup, outside its clock)
  naive  a per-image torch eager fp32 loop (full decode, batch of 1), the baseline to beat
and the ratios e2e/ideal (target >= 0.8) and e2e/naive (target >= 3).
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import get_args

import numpy as np
from rich.console import Console
from rich.table import Table

from tastegraph.models.lite_files import Variant

console = Console(stderr=True)


def _decode_only(path: str, size: int = 224, max_aspect: float = 1.0) -> int:
    from tastegraph.imaging.decode import decode_image
    from tastegraph.imaging.limits import ImageLimits
    from tastegraph.models.preprocess import preprocess_image

    limits = ImageLimits(max_bytes=40 << 20, max_pixels=60_000_000)
    data = Path(path).read_bytes()
    img = decode_image(data, limits, draft_to=max(256, size)).image  # as ingest drafts
    return int(preprocess_image(img, size, max_aspect=max_aspect).shape[0])


def measure_decode(
    files: list[Path], workers: int, size: int = 224, max_aspect: float = 1.0
) -> float:
    decode = functools.partial(_decode_only, size=size, max_aspect=max_aspect)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(decode, [str(f) for f in files[:16]]))  # warm the workers
        t0 = time.perf_counter()
        list(pool.map(decode, [str(f) for f in files], chunksize=8))
        return len(files) / (time.perf_counter() - t0)


def measure_forward(
    settings: object, files: list[Path], n: int, repeats: int = 3
) -> tuple[float, str, dict[str, float]]:
    """Images/s of the bare encoder on full batches of real pixels, per input shape, combined
    by the share of ``files`` that get each shape; also returns that share."""
    from PIL import Image

    from tastegraph.imaging.geometry import model_input_shape
    from tastegraph.models.image import LiteImageEncoder

    enc = LiteImageEncoder(settings)  # type: ignore[arg-type]
    share: dict[tuple[int, int], float] = {}
    for f in files:
        with Image.open(f) as im:
            shape = model_input_shape(*im.size, enc.input_size, enc.max_aspect)
        share[shape] = share.get(shape, 0.0) + 1.0 / len(files)
    seconds_per_image = 0.0
    for shape, frac in share.items():
        batch = []
        for f in files:
            with Image.open(f) as im:
                if model_input_shape(*im.size, enc.input_size, enc.max_aspect) == shape:
                    batch.append(enc.preprocess(im.convert("RGB")))
            if len(batch) == 32:
                break
        pixels = np.stack([batch[i % len(batch)] for i in range(32)])
        enc.encode(pixels)
        rates = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(max(1, n // 32)):
                enc.encode(pixels)
            rates.append(32 * max(1, n // 32) / (time.perf_counter() - t0))
        seconds_per_image += frac / statistics.median(rates)
    shares = {f"{r}x{c}": round(v, 3) for (r, c), v in sorted(share.items())}
    return 1.0 / seconds_per_image, enc.runtime, shares


def measure_e2e(settings: object, files: list[Path]) -> tuple[float, dict[str, float]]:
    from tastegraph.app import build

    app = build(settings)  # type: ignore[arg-type]
    app.encoders.text.encode(["warm up"])
    folder = Path(settings.data_dir) / "src"  # type: ignore[attr-defined]
    folder.mkdir()
    for f in files:
        (folder / f.name).symlink_to(f.resolve())
    report = app.catalog.ingest(str(folder), progress=False)
    app.close()
    assert report.added == len(files), report.to_dict()
    # Where the time went, per stage (they overlap: see tastegraph.catalog.pipeline.report.Clock).
    # ``one_off_setup``: model export/compile and label vectors, done by ingest before its
    # clock starts (seconds on a fresh data dir, ~0 once cached); not part of ``total``.
    stages = {
        "one_off_setup": round(report.setup_seconds, 3),
        "total": round(report.seconds, 3),
        **report.timings,
    }
    return report.images_per_s, stages


def measure_naive(files: list[Path], size: int = 224, variant: str = "lite0") -> float:
    import torch
    from PIL import Image

    from tastegraph.models.lite import load_lite
    from tastegraph.models.preprocess import preprocess_image

    model = load_lite(image_size=size, variant=variant).eval()  # type: ignore[arg-type]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for f in files:
            img = Image.open(f).convert("RGB")
            x = torch.from_numpy(preprocess_image(img, size)).permute(2, 0, 1)[None].float()
            model((x / 127.5) - 1.0)
    return len(files) / (time.perf_counter() - t0)


def run(
    images: Path,
    n: int,
    naive_n: int,
    models_dir: Path | None,
    input_size: int | None = None,
    max_aspect: float | None = None,
    model: str | None = None,
) -> dict[str, object]:
    from tastegraph.models.image import LiteImageEncoder
    from tastegraph.settings import Settings

    files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:n]
    if len(files) < n:
        console.print(f"only {len(files)} images found")
    from tastegraph.catalog.pipeline.decode_pool import usable_cores

    workers = usable_cores()  # as many decode processes as ingest starts
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-"))
    try:
        data = tmp / "data"
        data.mkdir()
        if models_dir:
            (data / "models").symlink_to(models_dir.resolve(), target_is_directory=True)
        settings = Settings(data_dir=data, whiten_min_pins=10**9)
        if input_size:
            settings = settings.updated(models={"image_input_size": input_size})
        if max_aspect:
            settings = settings.updated(models={"image_max_aspect": max_aspect})
        if model:
            settings = settings.updated(models={"image": model})
        # D, F, e2e and naive all run the same network at its input size.
        variant, size = settings.models.image, LiteImageEncoder(settings).input_size
        console.print("decode-only …")
        d = measure_decode(files, workers, size, settings.models.image_max_aspect)
        console.print("raw forward …")
        f, runtime, shapes = measure_forward(settings, files, n)
        console.print("end to end ingest …")
        e2e, stages = measure_e2e(settings, files)
        console.print("naive torch loop …")
        naive = measure_naive(files[:naive_n], size, variant)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ideal = 1.0 / (1.0 / d + 1.0 / f)
    return {
        "images": len(files),
        "cores": workers,
        "model": variant,
        "input_size": size,
        "input_shapes": shapes,
        "runtime": runtime,
        "decode_only_per_s": round(d, 1),
        "forward_per_s": round(f, 1),
        "ideal_per_s": round(ideal, 1),
        "e2e_per_s": round(e2e, 1),
        "naive_torch_per_s": round(naive, 1),
        "e2e_over_ideal": round(e2e / ideal, 3),
        "e2e_over_naive": round(e2e / naive, 2),
        "e2e_stages_s": stages,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=Path, default=Path("../shared/data/clothing/images"))
    ap.add_argument("--n", type=int, default=800)
    ap.add_argument("--naive-n", type=int, default=100)
    ap.add_argument("--models", type=Path, default=Path(".cache/models"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--input-size", type=int, default=None, help="model input side (default: the setting's)"
    )
    ap.add_argument(
        "--max-aspect",
        type=float,
        default=None,
        help="image_max_aspect (default: the setting's); > 1 gives wide photos a wide input",
    )
    ap.add_argument(
        "--model", choices=get_args(Variant), default=None, help="default: the setting's"
    )
    a = ap.parse_args(argv)
    models = a.models if a.models.is_dir() else None
    res = run(a.images, a.n, a.naive_n, models, a.input_size, a.max_aspect, a.model)
    t = Table("measure", "value")
    for k, v in res.items():
        t.add_row(k, str(v))
    console.print(t)
    if a.json:
        sys.stdout.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
