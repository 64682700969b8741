"""Scratch evaluation: caption -> image retrieval on flickr8k-1k through the ConSE bridge.

Each of the 5,000 captions queries the 1,000 images; exactly one is relevant. We report R@1, R@5,
R@10 over all captions and separately for two halves of the images (split by a hash of the file
name): options are chosen on half ``A`` and checked on half ``B`` so that the reported gain is not
a fit to these captions.

Step 1 (``extract``) runs the production image encoder and text encoder once and caches the image
probabilities and caption vectors; step 2 (``ablate``) prints the ablation table.

    .venv/bin/python bench/eval_captions_features.py extract --data ../shared/data
    .venv/bin/python bench/eval_captions_features.py ablate --data ../shared/data
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

from tastegraph.models.bridge import BridgeConfig, ConSEBridge, label_vectors
from tastegraph.models.image import draft_size, make_image_encoder
from tastegraph.models.text import make_text_encoder
from tastegraph.settings import Settings

F32 = NDArray[np.float32]
CACHE = Path(os.environ.get("TASTEGRAPH_EVAL_CACHE", "/tmp/tastegraph-eval-captions"))


def load_captions(data: Path) -> tuple[list[str], list[str], NDArray[np.int64]]:
    """Image file names (sorted), captions, and each caption's image index."""
    with open(data / "flickr8k-1k" / "captions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    images = sorted({r["image"] for r in rows})
    index = {name: i for i, name in enumerate(images)}
    return images, [r["caption"] for r in rows], np.array([index[r["image"]] for r in rows])


def half_of(name: str) -> str:
    return "A" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "B"


def extract(data: Path) -> None:
    settings = Settings(data_dir=CACHE / "data")
    images, captions, _ = load_captions(data)
    enc = make_image_encoder(settings)
    t0 = time.perf_counter()
    pixels = []
    for name in images:
        with Image.open(data / "flickr8k-1k" / "images" / name) as img:
            s = draft_size(enc.input_size)
            img.draft("RGB", (s, s))
            pixels.append(enc.preprocess(img))
    out = enc.encode(np.stack(pixels))
    print(f"images: {len(images)} in {time.perf_counter() - t0:.1f}s ({enc.model_id})")
    text = make_text_encoder(settings)
    t0 = time.perf_counter()
    qv = text.encode(captions)
    print(f"captions: {len(captions)} in {time.perf_counter() - t0:.1f}s")
    assert out.probs is not None
    np.savez(CACHE / "flickr-captions.npz", probs=out.probs, captions=qv)


def recall(scores: F32, target: NDArray[np.int64], ks: tuple[int, ...] = (1, 5, 10)) -> list[float]:
    """Fraction of queries whose relevant item ranks within the top k (ties count against)."""
    own = scores[np.arange(len(target)), target]
    rank = (scores > own[:, None]).sum(axis=1)
    return [float((rank < k).mean()) for k in ks]


def ablate(data: Path) -> None:
    settings = Settings(data_dir=CACHE / "data")
    images, _, target = load_captions(data)
    cached = np.load(CACHE / "flickr-captions.npz")
    probs, qv = cached["probs"], cached["captions"]
    halves = np.array([half_of(images[t]) for t in target])
    text = make_text_encoder(settings)
    models = settings.data_dir / "models"
    labels = {k: label_vectors(text, k, models) for k in ("name", "name_desc", "templates")}  # type: ignore[arg-type]

    def run(name: str, cfg: BridgeConfig) -> None:
        bridge = ConSEBridge(text, cfg, labels=labels[cfg.label_text])
        scores = bridge.query_vectors(qv) @ bridge.transform_probs(probs).T
        row = [name]
        for sel in (np.ones(len(target), bool), halves == "A", halves == "B"):
            r1, r5, r10 = recall(scores[sel], target[sel])
            row.append(f"{r1:.3f} {r5:.3f} {r10:.3f}")
        print(f"| {row[0]:<52} | {row[1]} | {row[2]} | {row[3]} |")

    print(f"| {'variant':<52} | all R@1/5/10      | half A            | half B            |")
    print(f"|{'-' * 54}|-------------------|-------------------|-------------------|")
    base = BridgeConfig(label_text="name_desc", space="text", top_k=10, center=False)
    run("text: name+desc, top10 (plain ConSE)", base)
    run("text: name only, top10", BridgeConfig(label_text="name", space="text"))
    run("text: templates, top10", BridgeConfig(label_text="templates", space="text"))
    for k in (5, 20, 50):
        run(f"text: templates, top{k}", BridgeConfig(label_text="templates", space="text", top_k=k))
    for t in (0.5, 2.0):
        run(
            f"text: templates, top10, T_img={t}",
            BridgeConfig(label_text="templates", space="text", image_temperature=t),
        )
    run("text: templates, top10, centred", BridgeConfig(space="text", center=True))
    for tau in (0.02, 0.05, 0.1):
        for k in (10, 1000):
            run(
                f"labels: templates, top{k}, tau={tau}",
                BridgeConfig(space="labels", top_k=k, query_temperature=tau),
            )
    run("labels: name+desc, top10, tau=0.05", BridgeConfig(label_text="name_desc", space="labels"))
    for w in (0.3, 0.5, 0.7):
        run(f"fused w={w}: templates, top10, tau=0.05", BridgeConfig(space="fused", text_weight=w))
    run("fused w=0.5: templates, top10, tau=0.05, centred", BridgeConfig(center=True))
    run("default BridgeConfig()", BridgeConfig())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["extract", "ablate"])
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("TASTEGRAPH_EVAL_DATA", "../shared/data"))
    )
    args = ap.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    extract(args.data) if args.step == "extract" else ablate(args.data)


if __name__ == "__main__":
    main()
