"""The served recommender (feed engine, candidates, ranking, blending) and engagement writes.

The offline evaluation against peers (``tastegraph eval recs``) and the simulator
(``tastegraph simulate``) live in :mod:`tastegraph.evaluation.recs` and
:mod:`tastegraph.evaluation.simulator`.
"""
