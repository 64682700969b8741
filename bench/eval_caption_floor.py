"""What the ConSE similarity floor costs caption recall, and what it saves on unrelated queries.

For each floor, prints caption R@10 on flickr8k-1k when hits below the floor are dropped (as text
search does), and how many images a set of unrelated queries ("quantum chromodynamics", "tax law
reform", ...) still return from the flickr8k-1k and the clothing catalogs. Uses the caption cache
of ``bench/eval_captions_features.py`` (run its ``extract`` step first) and encodes the clothing
photos once into the same cache folder.

    .venv/bin/python bench/eval_caption_floor.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

from eval_captions_features import CACHE, _model_tag, load_captions
from tastegraph.models.bridge import BridgeConfig, ConSEBridge
from tastegraph.models.image import draft_size, make_image_encoder
from tastegraph.models.text import make_text_encoder
from tastegraph.settings import Settings

UNRELATED = [
    "quantum chromodynamics",
    "tax law reform",
    "stock market crash",
    "python programming tutorial",
    "medieval theology",
    "the french revolution",
    "photosynthesis in algae",
    "jazz saxophone solo",
    "asdfghjkl",
    "income statement",
    "differential equations",
    "supreme court ruling",
]
FLOORS = (0.12, 0.14, 0.16, 0.18, 0.2, 0.22)


def clothing_probs(data: Path, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Whole-image and regional probabilities of every clothing photo (cached)."""
    path = CACHE / f"clothing-probs-{_model_tag(settings)}.npz"
    if not path.is_file():
        enc = make_image_encoder(settings)
        files = sorted((data / "clothing" / "images").iterdir())
        probs, local = [], []
        for start in range(0, len(files), 64):
            pixels = []
            for f in files[start : start + 64]:
                with Image.open(f) as img:
                    img.draft("RGB", (draft_size(enc.input_size),) * 2)
                    pixels.append(enc.preprocess(img.convert("RGB")))
            out = enc.encode(pixels)
            probs.append(out.probs)
            local.append(out.local_probs)
        np.savez(path, probs=np.concatenate(probs), local=np.concatenate(local))
    cached = np.load(path)
    return cached["probs"], cached["local"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("TASTEGRAPH_EVAL_DATA", "../shared/data"))
    )
    args = ap.parse_args()
    settings = Settings(data_dir=CACHE / "data")
    _, _, target = load_captions(args.data)
    cached = np.load(CACHE / f"flickr-captions-{_model_tag(settings)}.npz")
    bridge = ConSEBridge(
        make_text_encoder(settings), BridgeConfig(), cache_dir=settings.data_dir / "models"
    )
    flickr = bridge.transform_probs(cached["probs_crop"], cached["local_crop"])
    clothing = bridge.transform_probs(*clothing_probs(args.data, settings))
    scores = bridge.query_vectors(cached["captions"]) @ flickr.T
    own = scores[np.arange(len(target)), target]
    rank = (scores > own[:, None]).sum(axis=1)
    unrelated = bridge.encode_query(UNRELATED)
    on_flickr, on_clothing = unrelated @ flickr.T, unrelated @ clothing.T
    print(f"caption R@10 without a floor: {(rank < 10).mean():.3f}")
    print(
        "| floor | caption R@10 | unrelated hits, flickr (max) | clothing (max) | QCD, clothing |"
    )
    print("|---|---|---|---|---|")
    for floor in FLOORS:
        r10 = float(((rank < 10) & (own >= floor)).mean())
        f, c = (on_flickr >= floor).sum(axis=1), (on_clothing >= floor).sum(axis=1)
        print(
            f"| {floor:.2f} | {r10:.3f} | {f.sum()} ({f.max()}) | {c.sum()} ({c.max()}) | {c[0]} |"
        )


if __name__ == "__main__":
    main()
