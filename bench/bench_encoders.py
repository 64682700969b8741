"""Throughput, latency and fidelity of the Lite0 encoder on each runtime (about 1-2 minutes).

Prints one table: images/s at batch 32 (median of several batches), single-image latency (median
ms), and agreement with torch eager fp32 on real photos: mean/min cosine of the descriptors and
top-1 ImageNet class agreement. ``runtime="auto"`` in :mod:`tastegraph.models.runtime` is chosen
from this table.

    .venv/bin/python bench/bench_encoders.py [--data ../shared/data] [--batches 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tastegraph.models.image import preprocess_image
from tastegraph.models.lite0 import ExportOptions, Lite0Descriptor, export_onnx, load_lite0
from tastegraph.models.runtime import (
    OnnxRuntimeModel,
    OpenVinoModel,
    cpu_supports_bf16,
)

Run = Callable[[NDArray[np.uint8]], tuple[NDArray[np.float32], NDArray[np.float32]]]


def real_pixels(data: Path, n: int) -> NDArray[np.uint8]:
    """``n`` preprocessed real photos (clothing and flickr8k), or the matplotlib sample photo."""
    files = sorted((data / "clothing" / "images").glob("*.jpg"))[: n // 2]
    files += sorted((data / "flickr8k-1k" / "images").glob("*.jpg"))[: n - len(files)]
    if not files:
        import matplotlib

        files = [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
    imgs = []
    for i in range(n):
        with Image.open(files[i % len(files)]) as im:
            img = im.convert("RGB")
        # Vary repeats (when few files) so the batch is not n copies of one image.
        imgs.append(preprocess_image(img, 224, 0.875 if i < len(files) else 0.6 + 0.01 * i))
    return np.stack(imgs)


def torch_runner(channels_last: bool) -> Run:
    import torch

    model = Lite0Descriptor(load_lite0()).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def run(px: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        with torch.inference_mode():
            t = torch.from_numpy(px)
            if channels_last:
                # NHWC uint8 permuted to NCHW is already channels-last in memory.
                t = t.contiguous()
            f, p = model(t)
        return f.numpy(), p.numpy()

    return run


def compiled_runner(model: OpenVinoModel | OnnxRuntimeModel) -> Run:
    def run(px: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        out = model.run({"pixels": px})
        return out["features"], out["probs"]

    return run


def timed(run: Run, px: NDArray[np.uint8], batches: int, singles: int) -> tuple[float, float]:
    """(images/s at this batch size, median single-image latency in ms)."""
    run(px)  # warm-up: first call allocates and (for OpenVINO) finalises kernels
    times = []
    for _ in range(batches):
        t0 = time.perf_counter()
        run(px)
        times.append(time.perf_counter() - t0)
    ips = len(px) / statistics.median(times)
    one = px[:1].copy()
    run(one)
    lat = []
    for i in range(singles):
        one = px[i % len(px) : i % len(px) + 1].copy()
        t0 = time.perf_counter()
        run(one)
        lat.append(time.perf_counter() - t0)
    return ips, 1000 * statistics.median(lat)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_data = os.environ.get("TASTEGRAPH_EVAL_DATA", "../shared/data")
    ap.add_argument("--data", type=Path, default=Path(default_data))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=5, help="timed batches per runtime")
    ap.add_argument("--singles", type=int, default=20, help="timed single-image calls")
    ap.add_argument("--skip-torch-nchw", action="store_true", help="skip the slowest row")
    a = ap.parse_args(argv)

    import torch

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    px = real_pixels(a.data, a.batch)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(Path(tmp), ExportOptions())
        rows: list[tuple[str, Run, int]] = []
        if not a.skip_torch_nchw:
            rows.append(("torch eager fp32 (NCHW)", torch_runner(False), max(2, a.batches // 2)))
        rows.append(("torch eager fp32 (channels_last)", torch_runner(True), a.batches))
        rows.append(("onnxruntime fp32", compiled_runner(OnnxRuntimeModel(onnx_path)), a.batches))
        rows.append(("openvino f32", compiled_runner(OpenVinoModel(onnx_path, "f32")), a.batches))
        if cpu_supports_bf16():
            ov_bf16 = OpenVinoModel(onnx_path, "bf16")
            rows.append(("openvino bf16", compiled_runner(ov_bf16), a.batches))
        ref_f, ref_p = torch_runner(False)(px)
        print(f"Lite0 GeM-3, batch {a.batch}, {threads} threads, {len(px)} real photos\n")
        print(
            "| path | img/s (batch) | latency ms (1 img) | cosine mean | cosine min | top-1 agree |"
        )
        print("|---|---|---|---|---|---|")
        for name, run, batches in rows:
            ips, lat = timed(run, px, batches, a.singles if batches > 2 else 3)
            f, p = run(px)
            f = f / np.linalg.norm(f, axis=1, keepdims=True)
            cos = (f * ref_f).sum(1)
            agree = float((p.argmax(1) == ref_p.argmax(1)).mean())
            print(f"| {name} | {ips:.0f} | {lat:.1f} | {cos.mean():.5f} | {cos.min():.5f} "
                  f"| {agree:.0%} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
