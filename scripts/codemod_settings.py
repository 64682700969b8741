"""Rewrite readers of flat settings to sectioned ones: ``settings.port`` -> ``settings.api.port``.

Safe to run twice and over code it has not seen: it only rewrites attribute reads it can be
sure are on a ``Settings`` object:

- ``<anything>.settings.<old>`` and ``settings.<old>`` (the name ends in ``settings``),
- ``s.<old>`` in a file that binds ``s`` to settings (``s = ...settings``, ``s = settings_for(``,
  ``s = get_settings(``, ``s = Settings(``, or ``s: Settings``),
- flat names quoted in ``settings.digest(...)`` / ``s.digest(...)`` calls.

It prints every change, and warns (without changing anything) about flat names it cannot
rewrite safely: ``model_copy(update={"<old>": ...})``, ``setattr(..., "<old>")`` and
``model_fields["<old>"]``. Flat keyword arguments (``Settings(port=9000)``) keep working and are
left alone.

A file containing ``codemod_settings: skip-file`` is left alone (tests that use the old names
on purpose).

Usage: ``python scripts/codemod_settings.py [--check] [PATH ...]`` (default: src tests bench docs
README.md); ``--check`` changes nothing and exits 1 if something would change. Run
``ruff format`` and ``ruff check`` afterwards: a rewritten line can grow past the line limit.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

# old flat attribute -> new dotted path (the same table as tastegraph.settings.sections.LEGACY;
# kept here so the script runs on any tree, before or after the merge).
MAPPING: dict[str, str] = {
    "store_url": "store.url",
    "model_pack": "models.pack",
    "clip_weights": "models.clip_weights",
    "runtime": "models.runtime",
    "precision": "models.precision",
    "image_model": "models.image",
    "image_input_size": "models.image_input_size",
    "image_max_aspect": "models.image_max_aspect",
    "batch_size": "models.batch_size",
    "image_dim": "models.image_dim",
    "whiten_min_pins": "models.whiten_min_pins",
    "index_kind": "index.kind",
    "text_floor": "search.text_floor",
    "conse_floor": "search.conse_floor",
    "query_expansion": "search.query_expansion",
    "rerank_depth": "search.rerank_depth",
    "decode_workers": "ingest.decode_workers",
    "max_image_bytes": "ingest.max_image_bytes",
    "max_image_pixels": "ingest.max_image_pixels",
    "thumbnail_size": "ingest.thumbnail_size",
    "fetch_timeout_s": "ingest.fetch_timeout_s",
    "dup_max_distance": "ingest.dup_max_distance",
    "events_min_time": "events.min_time",
    "events_max_future_s": "events.max_future_s",
    "host": "api.host",
    "port": "api.port",
    "allow_anonymous_read": "api.allow_anonymous_read",
    "allow_url_fetch": "api.allow_url_fetch",
    "allow_private_url_hosts": "api.allow_private_url_hosts",
    "max_upload_bytes": "api.max_upload_bytes",
}

OLD = "|".join(sorted(MAPPING, key=len, reverse=True))
# `settings.port`, `self.app.settings.port`, `tg.settings.port` (not `my_settings_x.port`).
SETTINGS_ATTR = re.compile(
    rf"(?<![\w.])((?:[A-Za-z_]\w*\.)*[A-Za-z_]*settings|(?:get_settings|settings_for|Settings)"
    rf"\([^()]*\))\.({OLD})\b"
)
S_ATTR = re.compile(rf"(?<![\w.])s\.({OLD})\b")
S_BOUND = re.compile(
    r"(?m)^\s*s\s*(?::\s*\"?Settings\b|=\s*(?:[\w.]*\bsettings\b(?!\.)(?!\()|"
    r"(?:get_settings|settings_for|Settings)\())"
    r"|\bs:\s*\"?Settings\b"
)
DIGEST = re.compile(r"(?<![\w.])((?:[A-Za-z_]\w*\.)*(?:[A-Za-z_]*settings|s))\.digest\(([^)]*)\)")
WARN = re.compile(
    rf"(update=\{{[^}}]*[\"']({OLD})[\"']|setattr\([^)]*[\"']({OLD})[\"']"
    rf"|Settings\.model_fields\[[\"']({OLD})[\"']\])"
)
SUFFIXES = {".py", ".md", ".pyi", ".toml", ".txt", ".rst"}


def rewrite(text: str) -> tuple[str, list[str]]:
    """The rewritten text and a line per change (``old -> new``)."""
    changes: list[str] = []

    def attr(m: re.Match[str]) -> str:
        new = f"{m.group(1)}.{MAPPING[m.group(2)]}"
        changes.append(f"{m.group(0)} -> {new}")
        return new

    def s_attr(m: re.Match[str]) -> str:
        new = f"s.{MAPPING[m.group(1)]}"
        changes.append(f"{m.group(0)} -> {new}")
        return new

    def digest(m: re.Match[str]) -> str:
        if m.group(1) == "s" and not S_BOUND.search(text):
            return m.group(0)
        args = re.sub(
            rf"([\"'])({OLD})\1",
            lambda a: f"{a.group(1)}{MAPPING[a.group(2)]}{a.group(1)}",
            m.group(2),
        )
        new = f"{m.group(1)}.digest({args})"
        if new != m.group(0):
            changes.append(f"{m.group(0)} -> {new}")
        return new

    out = SETTINGS_ATTR.sub(attr, text)
    out = DIGEST.sub(digest, out)
    if S_BOUND.search(text):
        out = S_ATTR.sub(s_attr, out)
    return out, changes


def files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(f for f in sorted(p.rglob("*")) if f.is_file() and f.suffix in SUFFIXES)
    me = Path(__file__).resolve()
    return [f for f in out if f.resolve() != me]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", default=["src", "tests", "bench", "docs", "README.md"])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if it would")
    args = ap.parse_args(argv)
    changed = 0
    for f in files(args.paths):
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if "codemod_settings: skip-file" in text:
            continue
        new, changes = rewrite(text)
        for line_no, line in enumerate(new.splitlines(), 1):
            for w in WARN.finditer(line):
                print(f"{f}:{line_no}: warning: flat setting name left as is: {w.group(0)}")
        if new != text:
            changed += 1
            for c in changes:
                print(f"{f}: {c}")
            if not args.check:
                f.write_text(new, encoding="utf-8")
    print(f"{changed} file(s) {'would change' if args.check else 'changed'}", file=sys.stderr)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
