"""Scratch evaluation: which input side the Lite0 image model should see (224, 256, 288, 320).

For each size, extracts GeM-pooled features and probabilities of the clothing photos (full-square
crop, the product's view) with the torch model under bf16 autocast, then prints clothing mAP@10
(relevant = same label, real classes only) for plain kNN, alpha-QE and the product's DBA re-rank
(vectorised: every catalog vector augmented with its 10 neighbours, the query expanded with the
best of its 50 candidates), on all real-class photos, the adult ones (``ref``, the protocol of the
data README's baseline) and each half split by contributor. With ``--flickr`` it also prints
caption R@10 of the ConSE bridge on flickr8k-1k.

    .venv/bin/python bench/eval_input_size.py --sizes 224,256,288        # ~4 min per size

Result (this machine, 2026-11-22; DBA column):

| size | real  | ref   | H0    | H1    | captions R@10 |
|------|-------|-------|-------|-------|---------------|
| 224  | 0.636 | 0.647 | 0.613 | 0.647 | 0.288         |
| 256  | 0.645 | 0.657 | 0.617 | 0.645 | 0.290         |
| 288  | 0.648 | 0.657 | 0.618 | 0.651 | 0.287         |
| 320  | below 288 on every split (plain kNN 0.586 vs 0.600 at 288, all rows) |
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from eval_quality_push import map10, topk
from tastegraph.models.preprocess import preprocess_image
from tastegraph.models.whiten import PCAWhitener, l2_normalize

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
UNLABELLED = {"Not sure", "Other", "Skip"}


def extract(files: list[Path], size: int) -> tuple[F32, F32, F32]:
    """(GeM p=3 descriptors, softmax probabilities, regional probabilities) of ``files`` at
    ``size`` px: the deployed graph (:class:`LiteDescriptor`) run in torch with bf16 autocast."""
    import torch

    from tastegraph.models.lite import LiteDescriptor, load_lite

    torch.set_num_threads(os.cpu_count() or 1)
    model = LiteDescriptor(load_lite(image_size=size).to(memory_format=torch.channels_last))
    feats, probs, local = [], [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for s in range(0, len(files), 32):
            px = []
            for f in files[s : s + 32]:
                with Image.open(f) as im:
                    im.draft("RGB", (size, size))
                    px.append(preprocess_image(im.convert("RGB"), size, 1.0))
            outs = model(torch.from_numpy(np.stack(px)))
            for acc, t in zip((feats, probs, local), outs, strict=True):
                acc.append(t.float().numpy())
    return np.concatenate(feats), np.concatenate(probs), np.concatenate(local)


def retrieval(db: F32, y: I64, depth: int = 50, k: int = 10, alpha: float = 3.0) -> list[float]:
    """Leave-one-out mAP@10 for plain kNN, alpha-QE and DBA re-ranking."""
    s = db @ db.T
    np.fill_diagonal(s, -np.inf)
    cand, cs = topk(s, depth)
    w = np.power(np.clip(cs[:, :k], 0, None), alpha)
    aug = l2_normalize(db + np.einsum("qk,qkd->qd", w, db[cand[:, :k]]))
    s2 = aug @ db.T
    np.fill_diagonal(s2, -np.inf)
    ac = aug[cand]
    sc = np.einsum("nd,ncd->nc", aug, ac)
    best = np.argsort(-sc, 1)[:, :k]
    ws = np.power(np.clip(np.take_along_axis(sc, best, 1), 0, None), alpha)
    q2 = l2_normalize(
        aug + np.einsum("nk,nkd->nd", ws, np.take_along_axis(ac, best[:, :, None], 1))
    )
    order = np.argsort(-np.einsum("nd,ncd->nc", q2, ac), 1, kind="stable")[:, :10]
    return [
        map10(cand[:, :10], y),
        map10(topk(s2, 10)[0], y),
        map10(np.take_along_axis(cand, order, 1), y),
    ]


def captions_r10(data: Path, size: int) -> float:
    from tastegraph.models.bridge import ConSEBridge
    from tastegraph.models.text import make_text_encoder
    from tastegraph.settings import Settings

    with open(data / "flickr8k-1k" / "captions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    images = sorted({r["image"] for r in rows})
    pos = {n: i for i, n in enumerate(images)}
    target = np.array([pos[r["image"]] for r in rows])
    _, probs, local = extract([data / "flickr8k-1k" / "images" / n for n in images], size)
    settings = Settings()
    bridge = ConSEBridge(make_text_encoder(settings), cache_dir=settings.data_dir / "models")
    s = bridge.encode_query([r["caption"] for r in rows]) @ bridge.transform_probs(probs, local).T
    rank = (s > s[np.arange(len(target)), target][:, None]).sum(1)
    return float((rank < 10).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="224,256,288")
    ap.add_argument("--flickr", action="store_true", help="also caption R@10 on flickr8k-1k")
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("TASTEGRAPH_EVAL_DATA", "../shared/data"))
    )
    a = ap.parse_args()
    with open(a.data / "clothing" / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] not in UNLABELLED]
    files = [a.data / "clothing" / "images" / f"{r['image']}.jpg" for r in rows]
    labels = sorted({r["label"] for r in rows})
    y = np.array([labels.index(r["label"]) for r in rows])
    adult = np.array([r["kids"] == "False" for r in rows])
    half = np.array([hashlib.sha256(r["sender_id"].encode()).digest()[0] % 2 for r in rows])
    subsets = {"real": np.ones(len(y), bool), "ref": adult, "H0": half == 0, "H1": half == 1}
    print("size | subset: plain / aQE / DBA mAP@10")
    for size in (int(s) for s in a.sizes.split(",")):
        g = l2_normalize(extract(files, size)[0])
        cells = []
        for name, m in subsets.items():
            db = l2_normalize(PCAWhitener(dim=256, shrinkage=1.0).fit(g[m]).transform(g[m]))
            cells.append(f"{name} " + "/".join(f"{v:.3f}" for v in retrieval(db, y[m])))
        extra = f" | captions R@10 {captions_r10(a.data, size):.3f}" if a.flickr else ""
        print(f"{size} | " + "  ".join(cells) + extra, flush=True)


if __name__ == "__main__":
    main()
