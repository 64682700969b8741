"""MiniLM text encoder: strict loading, tokenisation, ONNX export and real-model behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tastegraph.errors import ModelUnavailable
from tastegraph.models.base import TextEncoder
from tastegraph.models.text import (
    DIM,
    MAX_TOKENS,
    MODEL_ID,
    BertConfig,
    MiniLMTextEncoder,
    TorchTextEncoder,
    ensure_onnx,
    load_tokenizer,
    load_torch_model,
)
from tests.conftest import MODEL_CACHE

LONG = " ".join(["a brown dog chases a red ball across the wet sand near the sea"] * 5)
TEXTS = ["a dog runs on grass", "", "Stock market report.", LONG, "ünïcödé café 東京 🙂"]


# ------------------------------------------------------------------------------- fast (no weights)


def _tiny_checkpoint(folder: Path) -> dict[str, object]:
    """A random 2-layer BERT in the checkpoint layout, to test loading without the real weights."""
    import torch
    from safetensors.torch import save_file

    from tastegraph.models.text import _build_module

    cfg = BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(
        '{"vocab_size": 50, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,'
        ' "intermediate_size": 16, "max_position_embeddings": 16, "hidden_act": "gelu",'
        ' "model_type": "bert"}'
    )
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in _build_module(cfg).state_dict().items()}
    # The real checkpoint also carries these; the loader must accept and ignore them.
    state["pooler.dense.weight"] = torch.zeros(8, 8)
    state["pooler.dense.bias"] = torch.zeros(8)
    state["embeddings.position_ids"] = torch.arange(16)[None]
    save_file(state, str(folder / "model.safetensors"))
    return state


def test_strict_loading_accepts_the_checkpoint_layout(tmp_path: Path) -> None:
    import torch

    _tiny_checkpoint(tmp_path)
    model = load_torch_model(tmp_path)
    ids = torch.tensor([[1, 5, 7, 2, 0]])
    out = model(ids, (ids != 0).long())
    assert out.shape == (1, 8)
    assert torch.allclose(out.norm(dim=1), torch.ones(1), atol=1e-5)


@pytest.mark.parametrize("change", ["missing", "unexpected"])
def test_strict_loading_rejects_other_checkpoints(tmp_path: Path, change: str) -> None:
    import torch
    from safetensors.torch import save_file

    state = _tiny_checkpoint(tmp_path)
    if change == "missing":
        del state["encoder.layer.1.output.dense.weight"]
    else:
        state["encoder.layer.2.output.dense.weight"] = torch.zeros(8, 16)
    save_file(state, str(tmp_path / "model.safetensors"))  # type: ignore[arg-type]
    with pytest.raises(ModelUnavailable):
        load_torch_model(tmp_path)


def test_tokenizer_pads_to_the_longest_text_and_truncates() -> None:
    tok = load_tokenizer()
    # The shipped tokenizer.json pads everything to 128; we must not.
    assert len(tok.encode("a dog").ids) == 4  # [CLS] a dog [SEP]
    short, long = tok.encode_batch(["a dog", "a dog runs on the grass"])
    assert len(short.ids) == len(long.ids) == 8
    assert short.attention_mask == [1, 1, 1, 1, 0, 0, 0, 0]
    assert len(tok.encode(" ".join(["word"] * 1000)).ids) == MAX_TOKENS


# --------------------------------------------------------------------------------- real weights


@pytest.fixture(scope="module")
def onnx_path() -> Path:
    return ensure_onnx(MODEL_CACHE)


@pytest.fixture(scope="module")
def onnx_encoder(onnx_path: Path) -> MiniLMTextEncoder:
    return MiniLMTextEncoder(onnx_path)


@pytest.fixture(scope="module")
def torch_encoder() -> TorchTextEncoder:
    return TorchTextEncoder()


@pytest.mark.slow
def test_export_is_cached_under_a_digest_name(onnx_path: Path) -> None:
    assert onnx_path.parent == MODEL_CACHE
    assert onnx_path.name.startswith("minilm-l6-") and onnx_path.suffix == ".onnx"
    assert len(onnx_path.stem.removeprefix("minilm-l6-")) == 16
    assert ensure_onnx(MODEL_CACHE) == onnx_path
    assert not list(MODEL_CACHE.glob("minilm-l6-*.tmp")) + list(MODEL_CACHE.glob("*.staging"))


@pytest.mark.slow
def test_onnx_agrees_with_torch(
    onnx_encoder: MiniLMTextEncoder, torch_encoder: TorchTextEncoder
) -> None:
    a, b = onnx_encoder.encode(TEXTS), torch_encoder.encode(TEXTS)
    assert a.dtype == np.float32 and a.shape == (len(TEXTS), DIM)
    assert np.all((a * b).sum(axis=1) > 0.999)


@pytest.mark.slow
def test_encoder_protocol_and_unit_norm(onnx_encoder: MiniLMTextEncoder) -> None:
    assert isinstance(onnx_encoder, TextEncoder)
    assert onnx_encoder.model_id == MODEL_ID == "minilm-l6@1"
    assert onnx_encoder.dim == DIM == 384
    v = onnx_encoder.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_empty_inputs(onnx_encoder: MiniLMTextEncoder) -> None:
    assert onnx_encoder.encode([]).shape == (0, DIM)
    v = onnx_encoder.encode([""])
    assert v.shape == (1, DIM) and np.all(np.isfinite(v))
    with pytest.raises(TypeError):
        onnx_encoder.encode("a single string")  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["onnx", "torch"])
def test_vector_does_not_depend_on_batch_padding(
    which: str, onnx_encoder: MiniLMTextEncoder, torch_encoder: TorchTextEncoder
) -> None:
    enc = onnx_encoder if which == "onnx" else torch_encoder
    alone = enc.encode(["red summer dress"])[0]
    batched = enc.encode(["red summer dress", LONG, ""])
    np.testing.assert_allclose(batched[0], alone, atol=2e-5)
    # Order is restored after the encoder sorts by length.
    np.testing.assert_allclose(batched[1], enc.encode([LONG])[0], atol=2e-5)


@pytest.mark.slow
def test_known_sentence_similarities(onnx_encoder: MiniLMTextEncoder) -> None:
    dog, puppy, stocks, cat, car = onnx_encoder.encode(
        [
            "a dog runs on grass",
            "a puppy playing in a field",
            "stock market report",
            "a cat sleeping on a sofa",
            "a red sports car on the highway",
        ]
    )
    assert dog @ puppy > dog @ stocks + 0.3
    assert dog @ puppy > dog @ cat > dog @ stocks
    assert dog @ car < dog @ puppy
    # Paraphrases are near-identical, word order still matters a little.
    a, b = onnx_encoder.encode(["A man is eating food.", "A man is eating a piece of bread."])
    assert 0.6 < a @ b < 0.95


@pytest.mark.slow
def test_single_queries_are_cached_as_copies(onnx_encoder: MiniLMTextEncoder) -> None:
    first = onnx_encoder.encode(["a cached query"])
    first[0, 0] = 42.0  # callers may scribble on what they get back
    again = onnx_encoder.encode(["a cached query"])
    assert again[0, 0] != 42.0
    np.testing.assert_allclose(again, onnx_encoder.encode(["a cached query", "x"])[:1], atol=2e-5)
