"""PCAWhitener and expand_queries: maths, persistence and refusal of mismatched files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tastegraph.errors import IndexMismatch, InvalidInput
from tastegraph.models.whiten import PCAWhitener, _ledoit_wolf_shrinkage, expand_queries


def _data(n: int = 400, d: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Anisotropic, correlated data with a non-zero mean, like real descriptors.
    basis = rng.normal(size=(d, d))
    x = rng.normal(size=(n, d)) * np.linspace(3.0, 0.1, d) @ basis + 2.0
    return x.astype(np.float32)


def test_transform_shape_and_norm() -> None:
    x = _data()
    z = PCAWhitener(dim=8, shrinkage=0.0).fit_transform(x)
    assert z.shape == (400, 8)
    assert z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)


def test_full_whitening_gives_identity_covariance() -> None:
    x = _data()
    w = PCAWhitener(dim=10, shrinkage=0.0).fit(x)
    raw = ((x - w.mean_) @ w.components_.T) * w.scale_  # before the final L2 normalisation
    np.testing.assert_allclose(np.cov(raw.T), np.eye(10), atol=1e-3)
    assert np.all(np.diff(w.explained_variance_) <= 0)


def test_shrinkage_one_is_plain_pca_projection() -> None:
    x = _data()
    w = PCAWhitener(dim=12, shrinkage=1.0).fit(x)
    np.testing.assert_allclose(w.scale_, w.scale_[0], rtol=1e-5)  # same scale on every axis
    proj = (x - x.mean(0)) @ w.components_.T
    expected = proj / np.linalg.norm(proj, axis=1, keepdims=True)
    np.testing.assert_allclose(w.transform(x), expected, atol=1e-5)


def test_single_vector_transform() -> None:
    x = _data()
    w = PCAWhitener(dim=4, shrinkage=0.5).fit(x)
    np.testing.assert_allclose(w.transform(x[3]), w.transform(x)[3], atol=1e-6)


def test_ledoit_wolf_matches_direct_formula() -> None:
    x = _data(n=60, d=20).astype(np.float64)
    xc = x - x.mean(0)
    n, p = xc.shape
    s = xc.T @ xc / n
    mu = np.trace(s) / p
    delta = np.sum((s - mu * np.eye(p)) ** 2) / p
    beta = sum(np.sum((np.outer(r, r) - s) ** 2) for r in xc) / (n * n * p)
    expected = min(beta, delta) / delta
    eig = np.linalg.svd(xc, compute_uv=False) ** 2 / n
    assert _ledoit_wolf_shrinkage(xc, eig, p) == pytest.approx(expected, rel=1e-6)


def test_auto_shrinkage_grows_when_samples_are_few() -> None:
    few = PCAWhitener(dim=8, shrinkage="auto").fit(_data(n=40, d=32))
    many = PCAWhitener(dim=8, shrinkage="auto").fit(_data(n=4000, d=32))
    assert 0.0 <= many.shrinkage_ < few.shrinkage_ <= 1.0


def test_refuses_bad_parameters_and_inputs() -> None:
    with pytest.raises(InvalidInput):
        PCAWhitener(dim=0)
    with pytest.raises(InvalidInput):
        PCAWhitener(shrinkage=1.5)
    with pytest.raises(InvalidInput):
        PCAWhitener(dim=64).fit(_data(n=50, d=128))  # fewer samples than dimensions kept
    with pytest.raises(InvalidInput):
        PCAWhitener(dim=64).fit(_data(d=32))  # more dimensions than the input has
    with pytest.raises(InvalidInput):
        PCAWhitener(dim=4).transform(_data())  # not fitted
    w = PCAWhitener(dim=4).fit(_data(d=32))
    with pytest.raises(IndexMismatch):
        w.transform(_data(d=16))


def test_save_load_round_trip(tmp_path: Path) -> None:
    x = _data()
    w = PCAWhitener(dim=8, shrinkage="auto", model_id="lite0-gem3@1").fit(x)
    path = w.save(tmp_path / "sub" / "whiten.npz")
    assert path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    # Plain arrays only: loadable without pickle.
    with np.load(path, allow_pickle=False) as z:
        assert str(z["model_id"]) == "lite0-gem3@1"
        assert int(z["dim"]) == 8
    back = PCAWhitener.load(path, model_id="lite0-gem3@1", dim=8)
    assert back.digest_ == w.digest_
    assert back.shrinkage == "auto"
    assert back.shrinkage_ == pytest.approx(w.shrinkage_)
    assert back.n_samples_ == 400
    np.testing.assert_array_equal(back.transform(x), w.transform(x))


def test_load_refuses_mismatch(tmp_path: Path) -> None:
    path = (
        PCAWhitener(dim=8, shrinkage=0.2, model_id="lite0-gem3@1")
        .fit(_data())
        .save(tmp_path / "w.npz")
    )
    PCAWhitener.load(path)  # no expectations: accepted
    with pytest.raises(IndexMismatch, match="lite0-avg@1"):
        PCAWhitener.load(path, model_id="lite0-avg@1")
    with pytest.raises(IndexMismatch):
        PCAWhitener.load(path, dim=256)
    # A tampered file fails its digest.
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["scale_"] = arrays["scale_"] * 2
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **arrays)
    with pytest.raises(IndexMismatch, match="digest"):
        PCAWhitener.load(tampered)
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"not a zip file")
    with pytest.raises(IndexMismatch):
        PCAWhitener.load(bogus)


def test_expand_queries_weights_neighbours_by_score() -> None:
    q = np.array([[1.0, 0.0, 0.0]], np.float32)
    nbrs = np.array([[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]], np.float32)
    # A neighbour with similarity 0 adds nothing; one with similarity 1 adds itself fully.
    out = expand_queries(q, nbrs, np.array([[1.0, 0.0]]), alpha=3.0, k=2)
    np.testing.assert_allclose(out, [[np.sqrt(0.5), np.sqrt(0.5), 0.0]], atol=1e-6)
    # alpha sharpens: 0.5 ** 3 = 0.125.
    out = expand_queries(q, nbrs, np.array([[0.5, 0.5]]), alpha=3.0, k=1)
    expected = np.array([1.0, 0.125, 0.0]) / np.linalg.norm([1.0, 0.125, 0.0])
    np.testing.assert_allclose(out[0], expected, atol=1e-6)
    # k = 0 leaves the query unchanged; negative scores never push the query away.
    np.testing.assert_allclose(expand_queries(q, nbrs, np.ones((1, 2)), k=0), q)
    np.testing.assert_allclose(expand_queries(q, nbrs, -np.ones((1, 2)), k=2), q)


def test_expand_queries_checks_shapes() -> None:
    with pytest.raises(InvalidInput):
        expand_queries(np.ones((2, 3)), np.ones((1, 4, 3)), np.ones((1, 4)))
