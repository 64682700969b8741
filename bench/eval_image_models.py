"""Which EfficientNet-Lite the ``lite`` pack should run: Lite0, Lite1 or Lite2, at which input side.

Every variant runs the deployed graph (:class:`tastegraph.models.lite.LiteDescriptor`) in torch
fp32 on the same photos, with the product's preprocessing (full square, draft-mode JPEG decode),
side by side in one run. For each it prints:

- flickr8k-1k caption -> image R@1/5/10 through the product's ConSE bridge (default
  :class:`~tastegraph.models.bridge.BridgeConfig`, no similarity floor), over all 5,000 captions
  and on the two halves of the images (A/B by a hash of the file name);
- clothing image -> image mAP@10 over all 3,809 labelled photos (each queries the rest): the GeM
  descriptor alone, and after PCA to 256 fitted on the catalog plus alpha query expansion, the
  label-free chain of ``bench/eval_retrieval_features.py``;
- the forward rate of the torch model (fp32, both cores) as a rough cost ratio.

    .venv/bin/python bench/eval_image_models.py --data ../shared/data                # ~20 min
    .venv/bin/python bench/eval_image_models.py --data ../shared/data --only captions

Outputs are cached per (variant, side, data set) under ``$TASTEGRAPH_EVAL_CACHE`` (default
``/tmp/tastegraph-eval-models``), so a second run only re-scores.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from rich.console import Console
from rich.progress import track

from eval_retrieval_features import aqe, retrieval_metrics
from tastegraph.models.bridge import BridgeConfig, ConSEBridge, label_vectors
from tastegraph.models.image import draft_size
from tastegraph.models.preprocess import preprocess_image
from tastegraph.models.text import make_text_encoder
from tastegraph.settings import Settings

F32 = NDArray[np.float32]
CACHE = Path(os.environ.get("TASTEGRAPH_EVAL_CACHE", "/tmp/tastegraph-eval-models"))
DEFAULT_RUNS = ("lite0:256", "lite1:288", "lite2:256", "lite2:288", "lite2:320")
console = Console()


def _files(data: Path, which: str) -> tuple[list[Path], list[str]]:
    """Photo paths and, per photo, its caption-set key (flickr) or its label (clothing)."""
    if which == "captions":
        with open(data / "flickr8k-1k" / "captions.csv", newline="", encoding="utf-8") as f:
            names = sorted({r["image"] for r in csv.DictReader(f)})
        return [data / "flickr8k-1k" / "images" / n for n in names], names
    with open(data / "clothing" / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_stem = {p.stem: p for p in (data / "clothing" / "images").iterdir()}
    return [by_stem[Path(r["image"]).stem] for r in rows], [r["label"] for r in rows]


def _outputs(variant: str, size: int, paths: list[Path], key: str) -> dict[str, F32]:
    """(features, probs, local_probs) of every photo, cached; also the forward rate."""
    path = CACHE / f"{key}-{variant}-{size}.npz"
    if path.is_file():
        return dict(np.load(path))
    import torch

    from tastegraph.models.lite import LiteDescriptor, load_lite

    torch.set_num_threads(os.cpu_count() or 2)
    net = LiteDescriptor(load_lite(image_size=size, variant=variant))  # type: ignore[arg-type]
    parts: list[list[NDArray[np.float32]]] = [[], [], []]
    forward_s = 0.0
    batches = range(0, len(paths), 32)
    for start in track(batches, description=f"{key} {variant} {size}px", console=console):
        pixels = []
        for p in paths[start : start + 32]:
            with Image.open(p) as img:
                s = draft_size(size)
                img.draft("RGB", (s, s))
                pixels.append(preprocess_image(img.convert("RGB"), size))
        x = torch.from_numpy(np.stack(pixels))
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = net(x)
        forward_s += time.perf_counter() - t0
        for part, t in zip(parts, out, strict=True):
            part.append(t.numpy())
    res = {k: np.concatenate(v) for k, v in zip(("features", "probs", "local"), parts, strict=True)}
    res["rate"] = np.array(len(paths) / forward_s, np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **res)  # type: ignore[arg-type]
    return res


def _recall(scores: F32, target: NDArray[np.int64]) -> list[float]:
    own = scores[np.arange(len(target)), target]
    rank = (scores > own[:, None]).sum(axis=1)
    return [float((rank < k).mean()) for k in (1, 5, 10)]


def caption_scores(data: Path, runs: list[tuple[str, int]]) -> None:
    paths, names = _files(data, "captions")
    with open(data / "flickr8k-1k" / "captions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    index = {n: i for i, n in enumerate(names)}
    target = np.array([index[r["image"]] for r in rows])
    half = np.array([hashlib.sha256(names[t].encode()).digest()[0] % 2 for t in target])
    settings = Settings(data_dir=CACHE / "data")
    text = make_text_encoder(settings)
    bridge = ConSEBridge(text, BridgeConfig(), labels=label_vectors(text, "templates", None))
    queries = bridge.encode_query([r["caption"] for r in rows])
    console.print("\n| model | side | R@1 | R@5 | R@10 | R@10 A / B | torch fp32 img/s |")
    console.print("|---|---|---|---|---|---|---|")
    for variant, size in runs:
        out = _outputs(variant, size, paths, "captions")
        scores = queries @ bridge.transform_probs(out["probs"], out["local"]).T
        r = _recall(scores, target)
        a, b = (_recall(scores[half == h], target[half == h])[2] for h in (0, 1))
        console.print(
            f"| {variant} | {size} | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} | {a:.3f} / {b:.3f} "
            f"| {float(out['rate']):.1f} |"
        )


def _pca(x: F32, dim: int = 256) -> F32:
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    z = centred @ vt[:dim].T
    return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)


def clothing_scores(data: Path, runs: list[tuple[str, int]]) -> None:
    paths, labels = _files(data, "clothing")
    classes = {name: i for i, name in enumerate(sorted(set(labels)))}
    y = np.array([classes[name] for name in labels])
    console.print("\n| model | side | GeM P@1 | GeM mAP@10 | PCA 256 + aQE P@1 | mAP@10 |")
    console.print("|---|---|---|---|---|---|")
    for variant, size in runs:
        x = _outputs(variant, size, paths, "clothing")["features"].astype(np.float32)
        plain = retrieval_metrics(x, y)
        chain = retrieval_metrics(aqe(_pca(x), 3.0, 10), y)
        console.print(
            f"| {variant} | {size} | {plain['p_at_1']:.3f} | {plain['map_at_10']:.3f} "
            f"| {chain['p_at_1']:.3f} | {chain['map_at_10']:.3f} |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="variant:side ...")
    ap.add_argument("--only", choices=["captions", "clothing"], default=None)
    a = ap.parse_args(argv)
    runs = [(v, int(s)) for v, s in (r.split(":") for r in a.runs)]
    if a.only in (None, "captions"):
        caption_scores(a.data, runs)
    if a.only in (None, "clothing"):
        clothing_scores(a.data, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
