"""Recommendations from implicit feedback: interaction loading, recommenders and offline evaluation.

``data`` turns a MovieLens folder or a user/item/timestamp file into contiguous integer ids;
``models`` holds the recommenders (peers and tastegraph's candidates + ranker pipeline) behind one
estimator API; ``evaluate`` runs the leave-one-out and temporal protocols side by side.
"""
