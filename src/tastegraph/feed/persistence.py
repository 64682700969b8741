"""The feed's learned parts on disk: the ranker, the co-engagement neighbours, the behavioural
model and a manifest.

Files (one folder): ``feed.json`` (format, settings digest, parameters, features, fit report),
``cf.npz`` (neighbour pairs by pin id, so the catalog's row order may differ on load),
``behaviour.npz`` (the EASE weights and the ids of the pins they cover) and ``ranker/`` when a
ranker was trained. User state and graphs are not saved: ``fit`` (or
``observe``) rebuilds them from the event log, which the store keeps anyway. Files saved under
other settings are refused (``IndexMismatch``), never silently used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from tastegraph.errors import IndexMismatch, NotFound
from tastegraph.feed.data import FORMAT, FeedParams
from tastegraph.feed.ranker import FEATURES, LambdaRanker
from tastegraph.feed.sources import behaviour

__all__ = ["SavedModel", "read_model", "write_model"]

I64 = NDArray[np.int64]
F32 = NDArray[np.float32]

_HINT = "retrain with FeedEngine.fit under the current settings"


@dataclass
class SavedModel:
    """What :func:`read_model` found: the ranker (None when none was trained), the neighbour
    pairs by pin id, the fit report and the ids of the pins the behavioural model covers (its
    weights: :meth:`behaviour_model`)."""

    ranker: LambdaRanker | None
    cf_src: I64
    cf_dst: I64
    cf_value: F32
    fit_report: dict[str, Any]
    behaviour_ids: I64
    folder: Path

    def behaviour_model(self, rows_of_ids: I64) -> behaviour.BehaviourModel:
        """The behavioural model, given the engine rows of ``behaviour_ids`` (-1: unknown)."""
        return behaviour.load(self.folder / "behaviour.npz", rows_of_ids)


def write_model(
    folder: Path | str,
    *,
    params: FeedParams,
    ids: I64,
    cf: sp.csr_matrix,
    behaviour_model: behaviour.BehaviourModel,
    ranker: LambdaRanker | None,
    fit_report: dict[str, Any],
) -> Path:
    """Write the learned parts into ``folder`` (``ids`` maps the engine's rows to pin ids)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    digest = params.digest()
    if ranker is not None:
        ranker.save(out / "ranker", digest=digest)
    coo = cf.tocoo()
    with open(out / "cf.npz", "wb") as fh:
        np.savez(fh, src=ids[coo.row], dst=ids[coo.col], value=coo.data.astype(np.float32))
    behaviour.save(behaviour_model, out / "behaviour.npz", ids)
    manifest = {
        "format": FORMAT,
        "digest": digest,
        "params": params.to_dict(),
        "features": list(FEATURES),
        "ranker": ranker is not None,
        "fit_report": fit_report,
    }
    (out / "feed.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out


def read_model(folder: Path | str, digest: str) -> SavedModel:
    """Read what :func:`write_model` wrote; refuse files from other settings (``IndexMismatch``)."""
    src = Path(folder)
    try:
        manifest = json.loads((src / "feed.json").read_text())
    except FileNotFoundError as exc:
        raise NotFound(f"no feed model in {src}", hint=_HINT) from exc
    except (OSError, ValueError) as exc:
        raise IndexMismatch(f"feed model in {src} is unreadable: {exc}", hint=_HINT) from exc
    if manifest.get("format") != FORMAT or manifest.get("digest") != digest:
        raise IndexMismatch(
            f"feed model in {src} was saved with other settings "
            f"(digest {manifest.get('digest')!r}, these settings {digest!r})",
            hint=_HINT,
            saved=manifest.get("digest"),
            wanted=digest,
        )
    ranker = LambdaRanker.load(src / "ranker", digest=digest) if manifest.get("ranker") else None
    with np.load(src / "cf.npz", allow_pickle=False) as data:
        src_ids, dst_ids, v = data["src"], data["dst"], data["value"]
    beh_ids = behaviour.saved_ids(src / "behaviour.npz")
    fit_report = dict(manifest.get("fit_report", {}))
    return SavedModel(ranker, src_ids, dst_ids, v, fit_report, beh_ids, src)
