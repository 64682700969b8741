"""Candidate sources of the feed: the registry and the algorithms behind it.

``registry`` lists the sources a feed request runs (interest ANN, Pixie walks, co-engagement,
popular, fresh, cold-start explore) and says how to add one; ``walks`` (bipartite graphs, Pixie),
``clusters`` (k-means, PinnerSage interests), ``popularity`` and ``cooccurrence`` (item-item CF)
hold the algorithms, on pin rows and plain arrays.
"""
