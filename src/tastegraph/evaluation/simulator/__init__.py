"""The A/B simulator for feed policies (``tastegraph simulate``): synthetic people browse feeds.

``run`` (:func:`~tastegraph.evaluation.simulator.run.simulate`, the session loop), ``world``
(hidden tastes and browsing behaviour), ``policies`` (chronological, popular and the served feed
engine behind one interface, A/B assignment) and ``report`` (metrics, intervals, plot).
"""
