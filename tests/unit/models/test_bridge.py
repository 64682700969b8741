"""ConSE bridge: label texts, label-matrix cache, shapes and norms, and real caption retrieval."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest

from tastegraph.errors import InvalidInput, ModelUnavailable
from tastegraph.models.base import F32, ImageOutput, TextBridge
from tastegraph.models.bridge import (
    BridgeConfig,
    ConSEBridge,
    imagenet_label_texts,
    label_vectors,
    sharpen_top_k,
)
from tests.conftest import eval_data, real_settings
from tests.fakes import FakeTextEncoder

GOLDEN_RETRIEVER, SPEEDBOAT, SEASHORE = 207, 814, 978


class CountingEncoder(FakeTextEncoder):
    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: list[str]) -> F32:
        self.calls += 1
        return super().encode(texts)


def _probs(n: int, seed: int = 0) -> F32:
    logits = np.random.default_rng(seed).normal(size=(n, 1000)) * 3
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------------------------ label texts


def test_label_texts_cover_every_class_in_order() -> None:
    for kind, per_class in (("name", 1), ("name_desc", 1), ("templates", 3)):
        texts = imagenet_label_texts(kind)  # type: ignore[arg-type]
        assert len(texts) == 1000
        assert all(len(t) == per_class and all(s.strip() for s in t) for t in texts)
    templates = imagenet_label_texts("templates")
    assert templates[GOLDEN_RETRIEVER][0] == "Golden Retriever"
    assert templates[SEASHORE][0] == "beach"
    assert templates[1][1] == "a photo of a goldfish."
    # With a description: name first, then only its first sentence.
    assert templates[1][2].startswith("goldfish: A small")
    assert templates[1][2].count(". ") == 0
    # Class 32 (tailed frog) ships no description and falls back to the name.
    assert templates[32][2] == templates[32][0]


def test_unknown_label_text_kind() -> None:
    with pytest.raises(InvalidInput):
        imagenet_label_texts("wordnet")  # type: ignore[arg-type]


def test_label_vectors_are_unit_and_cached(tmp_path: Path) -> None:
    enc = CountingEncoder()
    first = label_vectors(enc, "templates", tmp_path)
    assert first.shape == (1000, enc.dim) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    (cached,) = tmp_path.glob("conse-labels-*.npy")
    assert not list(tmp_path.glob("*.tmp"))
    again = label_vectors(enc, "templates", tmp_path)
    assert enc.calls == 1  # read from the cache, not re-encoded
    np.testing.assert_array_equal(first, again)
    # Other label texts -> another digest, another file.
    label_vectors(enc, "name", tmp_path)
    assert len(list(tmp_path.glob("conse-labels-*.npy"))) == 2 and cached.exists()


# ---------------------------------------------------------------------------------- sharpening


def test_sharpen_top_k() -> None:
    p = _probs(4)
    w = sharpen_top_k(p, 10)
    assert ((w > 0).sum(axis=1) == 10).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    top = np.argsort(-p, axis=1)[:, :10]
    assert (np.take_along_axis(w, top, axis=1) > 0).all()
    flat, sharp = sharpen_top_k(p, 10, 3.0), sharpen_top_k(p, 10, 0.5)
    assert (flat.max(axis=1) < w.max(axis=1)).all() and (sharp.max(axis=1) > w.max(axis=1)).all()
    np.testing.assert_allclose(sharpen_top_k(p, 1000), p / p.sum(axis=1, keepdims=True), atol=1e-6)
    assert sharpen_top_k(np.zeros((1, 5)), 2).sum() == 0.0


# --------------------------------------------------------------------------------------- bridge


@pytest.fixture(scope="module")
def fake_labels() -> F32:
    return label_vectors(FakeTextEncoder(), "templates")


@pytest.mark.parametrize(("space", "dim"), [("text", 128), ("labels", 1000), ("fused", 1128)])
def test_shapes_and_unit_norm(space: str, dim: int, fake_labels: F32) -> None:
    bridge = ConSEBridge(FakeTextEncoder(), BridgeConfig(space=space), labels=fake_labels)  # type: ignore[arg-type]
    assert isinstance(bridge, TextBridge)
    assert bridge.dim == dim
    img = bridge.transform(ImageOutput(features=np.zeros((3, 8), np.float32), probs=_probs(3)))
    q = bridge.encode_query(["a dog on the beach", "", "boat"])
    for v in (img, q):
        assert v.shape == (3, dim) and v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert bridge.transform_probs(np.zeros((0, 1000), np.float32)).shape == (0, dim)
    assert bridge.encode_query([]).shape == (0, dim)


def test_fused_score_is_the_weighted_sum(fake_labels: F32) -> None:
    enc = FakeTextEncoder()
    parts = {
        s: ConSEBridge(enc, BridgeConfig(space=s), labels=fake_labels) for s in ("text", "labels")
    }
    fused = ConSEBridge(enc, BridgeConfig(space="fused", text_weight=0.3), labels=fake_labels)
    p, queries = _probs(5), ["a red boat", "dog"]

    def score(b: ConSEBridge) -> F32:
        return b.encode_query(queries) @ b.transform_probs(p).T

    expected = 0.3 * score(parts["text"]) + 0.7 * score(parts["labels"])
    np.testing.assert_allclose(score(fused), expected, atol=1e-5)


def test_regional_probabilities_are_mixed_in(fake_labels: F32) -> None:
    enc = FakeTextEncoder()
    p, local = _probs(4), _probs(4)[::-1].copy()
    mixed = ConSEBridge(enc, BridgeConfig(local_weight=0.25), labels=fake_labels)
    expected = mixed.transform_probs(0.75 * p + 0.25 * local)
    np.testing.assert_allclose(mixed.transform_probs(p, local), expected, atol=1e-6)
    out = ImageOutput(features=np.zeros((4, 8), np.float32), probs=p, local_probs=local)
    np.testing.assert_allclose(mixed.transform(out), expected, atol=1e-6)
    # Without regional probabilities (or with weight 0) only the whole-image ones count.
    whole = mixed.transform_probs(p)
    assert not np.allclose(whole, expected)
    off = ConSEBridge(enc, BridgeConfig(local_weight=0.0), labels=fake_labels)
    np.testing.assert_allclose(off.transform_probs(p, local), off.transform_probs(p), atol=1e-6)
    assert off.model_id != mixed.model_id
    with pytest.raises(InvalidInput, match="local_probs"):
        mixed.transform_probs(p, local[:2])
    with pytest.raises(InvalidInput, match="local_weight"):
        ConSEBridge(enc, BridgeConfig(local_weight=1.5))


def test_bad_inputs(fake_labels: F32) -> None:
    bridge = ConSEBridge(FakeTextEncoder(), labels=fake_labels)
    with pytest.raises(ModelUnavailable):
        bridge.transform(ImageOutput(features=np.zeros((1, 8), np.float32), probs=None))
    with pytest.raises(InvalidInput):
        bridge.transform_probs(np.ones((2, 999), np.float32))
    with pytest.raises(InvalidInput):
        bridge.query_vectors(np.ones((1, 7), np.float32))
    with pytest.raises(InvalidInput):
        ConSEBridge(FakeTextEncoder(), BridgeConfig(space="pixels"))  # type: ignore[arg-type]


def test_model_id_tracks_the_method(fake_labels: F32) -> None:
    enc = FakeTextEncoder()
    a = ConSEBridge(enc, labels=fake_labels).model_id
    assert a == ConSEBridge(enc, BridgeConfig(), labels=fake_labels).model_id
    assert a != ConSEBridge(enc, BridgeConfig(top_k=10), labels=fake_labels).model_id
    assert a.startswith("conse-text@") and enc.model_id in a


def test_labels_are_computed_lazily_and_cached(tmp_path: Path) -> None:
    enc = CountingEncoder()
    bridge = ConSEBridge(enc, cache_dir=tmp_path)
    assert enc.calls == 0  # constructing a bridge must stay cheap
    bridge.transform_probs(_probs(2))
    bridge.encode_query(["x"])
    assert enc.calls == 2  # the label texts once, then the query
    assert len(list(tmp_path.glob("conse-labels-*.npy"))) == 1


# ---------------------------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def real_bridge(tmp_path_factory: pytest.TempPathFactory) -> ConSEBridge:
    from tastegraph.models.bridge import make_bridge
    from tastegraph.models.text import make_text_encoder

    settings = real_settings(tmp_path_factory.mktemp("bridge"))
    return make_bridge(settings, make_text_encoder(settings))


def _one_hot(*classes: int) -> F32:
    p = np.full((len(classes), 1000), 1e-5, np.float32)
    p[np.arange(len(classes)), list(classes)] = 1.0
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.slow
def test_real_bridge_matches_words_to_classes(real_bridge: ConSEBridge) -> None:
    images = real_bridge.transform_probs(_one_hot(GOLDEN_RETRIEVER, SPEEDBOAT, SEASHORE))
    queries = real_bridge.encode_query(
        [
            "a dog playing fetch",
            "a fast motor boat on a lake",
            "people walking on the sand by the sea",
        ]
    )
    scores = queries @ images.T
    assert (scores.argmax(axis=1) == [0, 1, 2]).all(), scores


@pytest.mark.slow
def test_real_caption_retrieval(tmp_path: Path) -> None:
    """Flickr8k-1k, every other image (500) queried by its first caption: the chosen method beats
    plain ConSE (top-10, T=1, no centring) and stays near its measured R@10 (0.394 vs 0.316)."""
    from PIL import Image

    from tastegraph.models import make_encoders
    from tastegraph.models.image import draft_size

    data = eval_data("flickr8k-1k")
    first: dict[str, str] = {}
    with open(data / "captions.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            first.setdefault(row["image"], row["caption"])
    names = sorted(first)[::2]  # half the images keeps this test well under a minute
    t0 = time.perf_counter()
    enc = make_encoders(real_settings(tmp_path))
    size = draft_size(enc.image.input_size)
    pixels = []
    for name in names:
        with Image.open(data / "images" / name) as img:
            img.draft("RGB", (size, size))
            pixels.append(enc.image.preprocess(img))
    out = enc.image.encode(pixels)
    assert isinstance(enc.bridge, ConSEBridge)
    text_vecs = enc.text.encode([first[n] for n in names])

    def r_at_10(bridge: ConSEBridge) -> float:
        scores = bridge.query_vectors(text_vecs) @ bridge.transform(out).T
        rank = (scores > np.diag(scores)[:, None]).sum(axis=1)
        return float((rank < 10).mean())

    chosen = r_at_10(enc.bridge)
    plain_cfg = BridgeConfig(top_k=10, image_temperature=1.0, center=False, local_weight=0.0)
    plain = r_at_10(ConSEBridge(enc.text, plain_cfg, labels=enc.bridge.labels))
    elapsed = time.perf_counter() - t0
    print(f"R@10 chosen {chosen:.3f} plain {plain:.3f} ({elapsed:.0f}s)")
    assert chosen >= 0.33
    assert chosen >= plain + 0.03
