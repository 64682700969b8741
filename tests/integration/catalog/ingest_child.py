"""Run an ingest with fake encoders in a child process (the kill test SIGKILLs it)."""

from __future__ import annotations

import sys
from pathlib import Path

from tastegraph.app import build
from tastegraph.settings import Settings
from tests.fakes import fake_encoders

if __name__ == "__main__":
    data, source = Path(sys.argv[1]), sys.argv[2]
    app = build(
        Settings(data_dir=data, index_kind="exact", batch_size=4, decode_workers=2),
        encoders=fake_encoders(),
    )
    report = app.catalog.ingest(source, progress=False)
    app.close()
    print(report.added, flush=True)
