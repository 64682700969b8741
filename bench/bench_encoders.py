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

from tastegraph.models.lite import ExportOptions, export_onnx, load_lite
from tastegraph.models.preprocess import preprocess_image
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
    import torch.nn.functional as F

    from tastegraph.models.lite import gem_pool

    net = load_lite()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def run(px: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        with torch.inference_mode():
            x = torch.from_numpy(px).permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0
            # The permuted NHWC batch is channels-last already; make the layout explicit.
            fmap = net.forward_map(x.contiguous(memory_format=fmt))
            probs = torch.softmax(net.classify(fmap), dim=1)
            feats = F.normalize(gem_pool(fmap, 3.0), dim=1)
        return feats.numpy(), probs.numpy()

    return run


def compiled_runner(model: OpenVinoModel | OnnxRuntimeModel) -> Run:
    def run(px: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        out = model.run({"pixels": px})
        return out["features"], out["probs"]

    return run


def interleaved(
    runs: dict[str, Run], px: NDArray[np.uint8], rounds: int, singles: int
) -> dict[str, tuple[float, float]]:
    """{name: (images/s at this batch size, median single-image latency in ms)}.

    The runtimes take turns, one batch each per round, so load from other processes on a shared
    machine slows them all alike and the ratios stay meaningful even when absolute figures drift.
    """
    for run in runs.values():
        run(px)  # warm-up: first call allocates and (for OpenVINO) finalises kernels
        run(px[:1].copy())
    batch: dict[str, list[float]] = {k: [] for k in runs}
    single: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run(px)
            batch[name].append(time.perf_counter() - t0)
        for i in range(singles // rounds + 1):
            one = px[(r + i) % len(px)][None].copy()
            for name, run in runs.items():
                t0 = time.perf_counter()
                run(one)
                single[name].append(time.perf_counter() - t0)
    return {
        k: (len(px) / statistics.median(batch[k]), 1000 * statistics.median(single[k]))
        for k in runs
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_data = os.environ.get("TASTEGRAPH_EVAL_DATA", "../shared/data")
    ap.add_argument("--data", type=Path, default=Path(default_data))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=7, help="timed rounds (one batch each)")
    ap.add_argument("--singles", type=int, default=20, help="timed single-image calls")
    ap.add_argument("--skip-torch-nchw", action="store_true", help="skip the slowest row")
    a = ap.parse_args(argv)

    import torch

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    px = real_pixels(a.data, a.batch)
    ref_f, ref_p = torch_runner(False)(px)
    print(f"Lite0 GeM-3, batch {a.batch}, {threads} threads, {len(px)} real photos\n")
    print("| path | img/s (batch) | latency ms (1 img) | cosine mean | cosine min | top-1 agree |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(Path(tmp), ExportOptions())
        # Torch is 5-10x slower: a few batches of its own, then the exported runtimes in turns.
        torch_runs: dict[str, Run] = {}
        if not a.skip_torch_nchw:
            torch_runs["torch eager fp32 (NCHW)"] = torch_runner(False)
        torch_runs["torch eager fp32 (channels_last)"] = torch_runner(True)
        results = interleaved(torch_runs, px, rounds=2, singles=6)
        runs = torch_runs
        fast: dict[str, Run] = {
            "onnxruntime fp32": compiled_runner(OnnxRuntimeModel(onnx_path)),
            "openvino f32": compiled_runner(OpenVinoModel(onnx_path, "f32")),
        }
        if cpu_supports_bf16():
            fast["openvino bf16"] = compiled_runner(OpenVinoModel(onnx_path, "bf16"))
        results |= interleaved(fast, px, rounds=a.batches, singles=a.singles)
        runs = runs | fast
        for name, run in runs.items():
            ips, lat = results[name]
            f, p = run(px)
            f = f / np.linalg.norm(f, axis=1, keepdims=True)
            cos = (f * ref_f).sum(1)
            agree = float((p.argmax(1) == ref_p.argmax(1)).mean())
            print(
                f"| {name} | {ips:.0f} | {lat:.1f} | {cos.mean():.5f} | {cos.min():.5f} "
                f"| {agree:.0%} |",
                flush=True,
            )
        base = results["onnxruntime fp32"][0]
        print("\nthroughput relative to onnxruntime fp32: " + ", ".join(
            f"{k} {v[0] / base:.2f}x" for k, v in results.items()))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
