"""The recommenders ``tastegraph eval recs`` compares, behind one estimator API.

Every model follows the same shape (scikit-learn conventions, implicit's ``recommend``):

- ``Model(**params)`` stores hyperparameters only;
- ``fit(interactions, timestamps=None)`` takes a users x items ``scipy.sparse.csr_matrix`` (any
  non-zero counts as one interaction) and optionally a matrix of the same shape holding each
  interaction's Unix timestamp, and returns ``self``; learned attributes end in ``_``;
- ``score(user_ids, item_ids=None)`` gives a ``(len(user_ids), n)`` float32 array: every item when
  ``item_ids`` is None, the listed items for every user when it is 1-D, or one row of items per
  user when it is 2-D;
- ``recommend(user_ids, n, exclude_seen=True)`` gives ``(items, scores)``, each
  ``(len(user_ids), n)``, best first.

Models are pure: no clock (time features are relative to the latest training timestamp), no I/O;
``save``/``load`` write ``.npz`` files (never pickle).

One module per family: ``base`` (the shared estimator), ``popularity``, ``neighbours``
(:class:`ItemKNN`), ``linear`` (:class:`EASE`), ``factorisation`` (:class:`ALS`, :class:`BPR`),
and ``offline_tastegraph`` (:class:`TasteGraph`, reported as ``offline-tastegraph``: candidate
generation from several generators followed by a LightGBM LambdaRank ranker trained on a
validation split carved from the training data; only the evaluation runs it) with its first
stage in ``offline_features``. This module is the registry.

Example
-------
>>> import numpy as np, scipy.sparse as sp
>>> X = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1]], dtype=np.float32))
>>> model = EASE(lambda_=1.0).fit(X)
>>> items, scores = model.recommend([0], n=1)
>>> int(items[0, 0])
2
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from tastegraph.errors import InvalidInput
from tastegraph.evaluation.recs.models.base import FORMAT, Recommender
from tastegraph.evaluation.recs.models.factorisation import ALS, BPR
from tastegraph.evaluation.recs.models.linear import EASE
from tastegraph.evaluation.recs.models.neighbours import ItemKNN
from tastegraph.evaluation.recs.models.offline_tastegraph import TasteGraph
from tastegraph.evaluation.recs.models.popularity import Popularity

__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "MODELS",
    "ItemKNN",
    "Popularity",
    "Recommender",
    "TasteGraph",
    "load",
    "make_model",
]

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, ItemKNN, EASE, ALS, BPR, TasteGraph)
}


def make_model(name: str, **params: Any) -> Recommender:
    """Build a model by name (``popularity``, ``itemknn``, ``ease``, ``als``, ``bpr``,
    ``tastegraph``); an unknown name is an error listing the known ones."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise InvalidInput(
            f"unknown model {name!r}", hint="known models: " + ", ".join(sorted(MODELS))
        ) from None
    return cls(**params)


def load(path: Path | str) -> Recommender:
    """Read a model written by :meth:`Recommender.save`."""
    with np.load(Path(path), allow_pickle=False) as npz:
        if "__format__" not in npz.files or str(npz["__format__"]) != FORMAT:
            raise InvalidInput(
                f"{path}: not a {FORMAT} model file", hint="save it again with this version"
            )
        name = str(npz["__model__"])
        params = json.loads(str(npz["__params__"]))
        model = make_model(name, **params)
        state: dict[str, Any] = {}
        parts: dict[str, dict[str, Any]] = {}
        for key in npz.files:
            if key.startswith("__"):
                continue
            if ":" in key:
                base, part = key.split(":", 1)
                parts.setdefault(base, {})[part] = npz[key]
            else:
                arr = npz[key]
                state[key] = arr.item() if arr.ndim == 0 and arr.dtype.kind in "iufbU" else arr
        for base, p in parts.items():
            state[base] = sp.csr_matrix(
                (p["data"], p["indices"], p["indptr"]), shape=tuple(p["shape"])
            )
    model._restore(state)
    return model
