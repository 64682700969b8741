"""The browser UI: one page over the same API the CLI and other clients use."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

__all__ = ["index_html", "mount_web"]

HERE = Path(__file__).parent


def mount_web(api: FastAPI) -> None:
    api.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


@cache
def index_html() -> str:
    return (HERE / "templates" / "index.html").read_text(encoding="utf-8")
