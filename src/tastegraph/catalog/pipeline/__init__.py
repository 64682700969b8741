"""The ingest pipeline: read -> validate -> hash/dedup -> thumbnail -> encode -> tag -> write.

* :mod:`.steps`: the batch steps, pure functions over plain batch types (decode, encode images,
  encode texts, derive rows), runnable anywhere (the local runner, a Ray stage);
* :mod:`.local`: the local runner (decode worker processes from :mod:`.decode_pool`, the model
  steps in this process, a writer thread, progress, the timing stages);
* :mod:`.write`: one store transaction per batch, and its tally;
* :mod:`.run`: ``ingest`` / ``ingest_items``, the entry points (skipping what is done, the run
  record, the quarantine, the metadata update, derived state after the run);
* :mod:`.report`: :class:`~.report.IngestReport` and the per-stage clock;
* :mod:`.ray_runner` (with :mod:`.ray_stages` and :mod:`.ray_session`): the same steps as Ray
  Data stages on a local or remote Ray cluster (``ingest --ray``), and :mod:`.ray_reencode`,
  ``reindex --reencode --ray``; only these import ``ray`` (the ``ray`` extra), lazily.

Decode workers import this package: keep it free of imports (no store, no models, no torch).
"""
