"""scripts/codemod_settings.py: rewrites only what is surely a settings read, and is idempotent."""

# codemod_settings: skip-file (old names on purpose)
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from tastegraph.settings import LEGACY

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "codemod_settings.py"


def _codemod() -> ModuleType:
    spec = importlib.util.spec_from_file_location("codemod_settings", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_its_table_is_the_settings_table() -> None:
    assert {old: f"{s}.{f}" for old, (s, f) in LEGACY.items()} == _codemod().MAPPING


def test_it_rewrites_settings_reads_once_and_nothing_else() -> None:
    rewrite = _codemod().rewrite
    src = (
        "s = tg.settings\n"
        "a = self.app.settings.index_kind + settings.port + s.fetch_timeout_s\n"
        "b = cfg.thumbnail_size + server.port + my_settings_x.port + s.data_dir\n"
        'd = self.settings.digest("index_kind")\n'
        "e = get_settings().image_model\n"
    )
    out, changes = rewrite(src)
    assert out == (
        "s = tg.settings\n"
        "a = self.app.settings.index.kind + settings.api.port + s.ingest.fetch_timeout_s\n"
        "b = cfg.thumbnail_size + server.port + my_settings_x.port + s.data_dir\n"
        'd = self.settings.digest("index.kind")\n'
        "e = get_settings().models.image\n"
    )
    assert len(changes) == 5
    assert rewrite(out) == (out, [])  # idempotent


def test_s_is_left_alone_where_it_is_not_bound_to_settings() -> None:
    src = "s = start_server()\nprint(s.port, s.host)\n"
    assert _codemod().rewrite(src) == (src, [])
