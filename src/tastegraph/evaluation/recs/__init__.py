"""Offline evaluation of recommenders (``tastegraph eval recs``): the served feed against peers.

``data`` (datasets, user/item/timestamp files), ``protocols`` (the ``loo`` and ``temporal``
splits and their metrics), ``models`` (the peers and the offline TasteGraph behind one estimator
API) and ``evaluate`` (tuning, the report, the plot). The served feed engine is adapted to these
protocols in :mod:`tastegraph.evaluation.served_feed`.
"""
