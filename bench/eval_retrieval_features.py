"""Scratch evaluation: which post-processing of Lite0 features gives the best image retrieval.

Step 1 (``extract``) runs the model once per image and caches the final 7x7x1280 feature map
(float16) and the probabilities, so every pooling / whitening / expansion variant is evaluated
from the same single forward pass -- exactly what ingest would have.
Step 2 (``ablate``) prints the ablation table on ``clothing`` (each labelled image queries every
other labelled image; relevant = same label; P@1, P@10, mAP@10 with AP normalised by
min(10, #relevant)) and unsupervised checks on ``flickr8k-1k``.

    .venv/bin/python bench/eval_retrieval_features.py extract --data ../shared/data
    .venv/bin/python bench/eval_retrieval_features.py ablate --data ../shared/data
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tastegraph.models.image import draft_size, preprocess_image
from tastegraph.models.whiten import PCAWhitener, expand_queries

F32 = NDArray[np.float32]
CACHE = Path(os.environ.get("TASTEGRAPH_EVAL_CACHE", "/tmp/tastegraph-eval"))


# ----------------------------------------------------------------------------------- extraction


def _map_model(path: Path) -> Callable[[NDArray[np.uint8]], tuple[F32, F32]]:
    """An OpenVINO f32 model returning the raw feature map and probabilities (scratch export)."""
    import openvino as ov
    import torch

    from tastegraph.models.lite0 import load_lite0

    class MapNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = load_lite0()

        def forward(self, px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = px.permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0
            fmap = self.net.forward_map(x)
            return fmap, torch.softmax(self.net.classify(fmap), dim=1)

    if not path.exists():
        torch.onnx.export(
            MapNet().eval(),
            (torch.zeros((2, 224, 224, 3), dtype=torch.uint8),),
            str(path),
            input_names=["pixels"],
            output_names=["fmap", "probs"],
            dynamic_axes={"pixels": {0: "n"}},
            opset_version=17,
            dynamo=False,
        )
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def run(px: NDArray[np.uint8]) -> tuple[F32, F32]:
        out = compiled(px)
        return np.asarray(out[0]), np.asarray(out[1])

    return run


def _load(path: Path, crop: float) -> NDArray[np.uint8]:
    with Image.open(path) as im:
        im.draft("RGB", (draft_size(224, crop),) * 2)
        return preprocess_image(im.convert("RGB"), 224, crop)


def extract(data: Path, crop: float) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    run = _map_model(CACHE / "lite0-map.onnx")
    sets = {
        "clothing": sorted((data / "clothing" / "images").glob("*.jpg")),
        "flickr": sorted((data / "flickr8k-1k" / "images").glob("*.jpg")),
    }
    for name, files in sets.items():
        out = CACHE / f"{name}-c{crop:g}"
        if (out / "fmap.npy").exists():
            continue
        out.mkdir(exist_ok=True)
        fmaps = np.lib.format.open_memmap(
            out / "fmap.npy.tmp", mode="w+", dtype=np.float16, shape=(len(files), 1280, 7, 7)
        )
        probs = np.zeros((len(files), 1000), np.float32)
        t0 = time.perf_counter()
        for s in range(0, len(files), 32):
            px = np.stack([_load(f, crop) for f in files[s : s + 32]])
            fm, pr = run(px)
            fmaps[s : s + len(px)] = fm.astype(np.float16)
            probs[s : s + len(px)] = pr
        fmaps.flush()
        del fmaps
        os.replace(out / "fmap.npy.tmp", out / "fmap.npy")
        np.save(out / "probs.npy", probs)
        (out / "names.txt").write_text("\n".join(f.stem for f in files))
        print(f"{name} crop={crop}: {len(files)} images in {time.perf_counter() - t0:.0f}s")


# ----------------------------------------------------------------------------------- evaluation


def l2n(x: NDArray[np.floating]) -> F32:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def pool(fmap: NDArray[np.float16], how: str, chunk: int = 512) -> F32:
    """Pool a cached (N, C, 7, 7) map in chunks (the float32 copy of the whole map is ~1 GB)."""
    out = np.empty(fmap.shape[:2], np.float32)
    for s in range(0, len(fmap), chunk):
        x = np.asarray(fmap[s : s + chunk], np.float32).reshape(*fmap[s : s + chunk].shape[:2], -1)
        if how == "avg":
            out[s : s + chunk] = x.mean(-1)
        elif how == "max":
            out[s : s + chunk] = x.max(-1)
        elif how.startswith("gem"):
            p = float(how[3:])
            out[s : s + chunk] = np.power(np.power(np.maximum(x, 1e-6), p).mean(-1), 1.0 / p)
        else:
            raise ValueError(how)
    return out


def retrieval_metrics(db: F32, labels: NDArray[np.int64], k: int = 10) -> dict[str, float]:
    """Leave-one-out retrieval over ``db`` (L2-normalised rows): P@1, P@k, mAP@k."""
    sims = db @ db.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.take_along_axis(sims, top, 1).argsort(1)[:, ::-1]
    top = np.take_along_axis(top, order, 1)
    rel = labels[top] == labels[:, None]
    n_rel = np.bincount(labels)[labels] - 1
    prec = np.cumsum(rel, 1) / np.arange(1, k + 1)
    ap = (prec * rel).sum(1) / np.maximum(np.minimum(k, n_rel), 1)
    ok = n_rel > 0
    return {
        "p_at_1": float(rel[ok, 0].mean()),
        "p_at_10": float(rel[ok].mean()),
        "map_at_10": float(ap[ok].mean()),
    }


def knn(q: F32, db: F32, k: int, exclude_self: bool) -> tuple[NDArray[np.int64], F32]:
    sims = q @ db.T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    idx = np.argpartition(-sims, k, axis=1)[:, :k]
    s = np.take_along_axis(sims, idx, 1)
    order = s.argsort(1)[:, ::-1]
    return np.take_along_axis(idx, order, 1), np.take_along_axis(s, order, 1)


def aqe(db: F32, alpha: float, k: int) -> F32:
    """alpha-QE for leave-one-out queries: each expanded with its k neighbours (not itself)."""
    idx, s = knn(db, db, k, exclude_self=True)
    return expand_queries(db, db[idx], s, alpha=alpha, k=k)


def dba(db: F32, alpha: float, k: int) -> F32:
    """Database-side augmentation: every vector replaced by its alpha-weighted neighbourhood."""
    idx, s = knn(db, db, k, exclude_self=True)
    return expand_queries(db, db[idx], s, alpha=alpha, k=k)


def ablate(data: Path, crop: float, quick: bool) -> None:
    cdir = CACHE / f"clothing-c{crop:g}"
    names = (cdir / "names.txt").read_text().split("\n")
    fmap = np.load(cdir / "fmap.npy", mmap_mode="r")
    pos = {n: i for i, n in enumerate(names)}
    with open(data / "clothing" / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["image"] in pos]
    rows_idx = np.array([pos[r["image"]] for r in rows])
    label_names = sorted({r["label"] for r in rows})
    labels = np.array([label_names.index(r["label"]) for r in rows])
    senders = np.array([int(r["sender_id"]) for r in rows])

    def ev(name: str, lab_db: F32, extra: str = "") -> None:
        m = retrieval_metrics(l2n(lab_db), labels)
        print(f"| {name:<58} | {m['p_at_1']:.3f} | {m['p_at_10']:.3f} | {m['map_at_10']:.3f} |"
              f"{extra}", flush=True)  # fmt: skip

    print(f"crop={crop}  catalog={len(names)} images, labelled queries={len(rows)}")
    print("| variant | P@1 | P@10 | mAP@10 |\n|---|---|---|---|")
    pooled = {how: pool(fmap, how) for how in (["avg", "gem3"] if quick else
              ["avg", "max", "gem2", "gem3", "gem4"])}  # fmt: skip
    for how, x in pooled.items():
        ev(f"{how}, 1280-d, cosine", x[rows_idx])
    for how in ["avg", "gem3"]:
        x = l2n(pooled[how])
        ev(f"{how} + signed sqrt", np.sqrt(x)[rows_idx])
    best = "gem3"
    x_all = l2n(pooled[best])
    dims = [256] if quick else [128, 256, 512]
    shrinks = [0.0, 0.1, 0.3, 1.0] if quick else [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]
    for dim in dims:
        for sh in shrinks:
            w = PCAWhitener(dim=dim, shrinkage=sh).fit(x_all)
            ev(f"{best} + PCAw d={dim} shrink={sh}", w.transform(x_all)[rows_idx])
    for sh in ["auto"]:
        w = PCAWhitener(dim=256, shrinkage=sh).fit(x_all)
        ev(f"{best} + PCAw d=256 shrink=auto ({w.shrinkage_:.3f})", w.transform(x_all)[rows_idx])
    w = PCAWhitener(dim=256, shrinkage="auto").fit(pooled["avg"])
    ev("avg + PCAw d=256 shrink=auto", w.transform(l2n(pooled["avg"]))[rows_idx])

    # Robustness of the fit: fitted on few pins, on other senders only, on a different domain.
    rng = np.random.default_rng(0)
    for n in [512, 1024]:
        sub = x_all[rng.choice(len(x_all), n, replace=False)]
        for sh in [0.0, 0.1, 0.3, "auto"]:
            w = PCAWhitener(dim=256, shrinkage=sh).fit(sub)
            ev(f"{best} + PCAw 256 shrink={sh} fit on {n} random", w.transform(x_all)[rows_idx])
    half = np.isin(senders, np.unique(senders)[::2])
    for sh in [0.1, "auto"]:
        w = PCAWhitener(dim=256, shrinkage=sh).fit(x_all[rows_idx][half])
        m = retrieval_metrics(w.transform(x_all[rows_idx][~half]), labels[~half])
        m0 = retrieval_metrics(x_all[rows_idx][~half], labels[~half])
        print(f"| held-out senders: fit on other half, shrink={sh}: mAP@10 {m['map_at_10']:.3f} "
              f"(unwhitened {m0['map_at_10']:.3f}) |")  # fmt: skip
    fdir = CACHE / f"flickr-c{crop:g}"
    if (fdir / "fmap.npy").exists():
        xf = l2n(pool(np.load(fdir / "fmap.npy", mmap_mode="r"), best))
        w = PCAWhitener(dim=256, shrinkage="auto").fit(xf)
        ev(f"{best} + PCAw 256 auto fitted on flickr8k only", w.transform(x_all)[rows_idx])

    # Expansion on top of the chosen whitening.
    w = PCAWhitener(dim=256, shrinkage="auto").fit(x_all)
    z = w.transform(x_all)[rows_idx]
    for sq in [False, True]:
        zz = l2n(np.sign(z) * np.sqrt(np.abs(z))) if sq else z
        if sq:
            ev("PCAw auto + signed sqrt after whitening", zz)
    grid = [(3.0, 5), (3.0, 10)] if quick else [(1.0, 3), (3.0, 3), (3.0, 5), (3.0, 10),
                                                (5.0, 10), (3.0, 20)]  # fmt: skip
    for alpha, k in grid:
        ev(f"PCAw auto + aQE alpha={alpha} k={k} (query-time)", aqe(z, alpha, k))
    for alpha, k in grid:
        ev(f"PCAw auto + DBA alpha={alpha} k={k} (index-time)", dba(z, alpha, k))
    for alpha, k in grid[:3]:
        zd = dba(z, alpha, k)
        ev(f"PCAw auto + DBA + aQE alpha={alpha} k={k}", aqe(zd, alpha, k))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=["extract", "ablate"])
    default_data = os.environ.get("TASTEGRAPH_EVAL_DATA", "../shared/data")
    ap.add_argument("--data", type=Path, default=Path(default_data))
    ap.add_argument("--crop", type=float, default=0.875)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.step == "extract":
        extract(a.data, a.crop)
    else:
        ablate(a.data, a.crop, a.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
