"""``tastegraph demo``: build a demo catalog from the best source available, then serve it.

Sources, in order: ``--images DIR``; the CC0 clothing photo set (alexeygrigorev/clothing-dataset)
from a local copy (the evaluation data folder, or an earlier download in the data dir) or
downloaded once when the network allows; else the sample photos that ship inside installed
packages, with a message saying so. It never ends in a traceback.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from tastegraph.errors import InvalidInput
from tastegraph.settings import Settings

__all__ = ["CLOTHING_URL", "download_clothing", "pick_demo_source", "run_demo", "sample_photos"]

console = Console(stderr=True)

CLOTHING_URL = "https://github.com/alexeygrigorev/clothing-dataset/archive/refs/heads/master.tar.gz"


def sample_photos() -> list[Path]:
    """Real photos shipped inside installed packages (scikit-learn, matplotlib)."""
    found: list[Path] = []
    try:
        import sklearn.datasets

        base = Path(sklearn.datasets.__file__).parent / "images"
        found += sorted(base.glob("*.jpg"))
    except ImportError:
        pass
    try:
        import matplotlib

        base = Path(matplotlib.get_data_path()) / "sample_data"
        found += [p for p in (base / "grace_hopper.jpg",) if p.is_file()]
    except ImportError:
        pass
    return found


def download_clothing(dest: Path, *, url: str = CLOTHING_URL, timeout: float = 30.0) -> Path:
    """Download and unpack the clothing photos into ``dest`` once; verify on later runs.

    The archive's SHA-256 is recorded on first download and checked against the unpacked
    files' manifest afterwards, so a half-finished download is never mistaken for a finished one.
    """
    import httpx

    done = dest / ".complete"
    if done.is_file():
        return dest / "images"
    dest.mkdir(parents=True, exist_ok=True)
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        resp = client.get(url)
        resp.raise_for_status()
        blob = resp.content
    digest = hashlib.sha256(blob).hexdigest()
    images = dest / "images"
    images.mkdir(exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name)
            if not member.isfile() or name.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            if "images" not in name.parts:
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            # Only the base name is used: archive paths never escape the destination folder.
            (images / name.name).write_bytes(f.read())
    (dest / "SHA256").write_text(f"{digest}  {url}\n")
    done.write_text(digest)
    return images


def _image_files(folder: Path) -> Iterator[Path]:
    from tastegraph.catalog.sources import IMAGE_EXTENSIONS

    return (
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def pick_demo_source(settings: Settings, images: Path | None) -> tuple[Path | list[Path], str]:
    """The folder (or list of files) the demo catalog is built from, and a sentence why."""
    if images is not None:
        if not images.is_dir():
            raise InvalidInput(f"--images {images} is not a folder")
        if not any(_image_files(images)):
            raise InvalidInput(
                f"--images {images} holds no image files, so there is nothing to show.",
                hint="Point IMAGES (make demo) or --images at a folder of photos "
                "(jpg, png, webp, ...), or leave it out for the demo photos.",
            )
        return images, f"your images in {images}"
    local = settings.eval_data / "clothing" / "images"
    if local.is_dir():
        return local, f"the CC0 clothing photos in {local}"
    cache = settings.data_dir / "demo" / "clothing"
    try:
        folder = download_clothing(cache, timeout=settings.ingest.fetch_timeout_s)
        return folder, f"the CC0 clothing photos (downloaded to {cache})"
    except Exception as e:
        photos = sample_photos()
        if not photos:
            raise InvalidInput(
                "no demo images: offline, and no sample photos are installed",
                hint="run `tastegraph demo --images DIR` with a folder of your photos",
            ) from e
        return photos, (
            f"the {len(photos)} sample photos shipped in installed packages: the clothing photo "
            f"set could not be downloaded ({type(e).__name__}). For a real catalog run "
            "`make demo IMAGES=/path/to/photos`"
        )


def run_demo(settings: Settings, *, images: Path | None = None, serve: bool = True) -> None:
    from tastegraph.app import build
    from tastegraph.catalog.sources import SourceItem
    from tastegraph.server import run_server

    source, why = pick_demo_source(settings, images)
    console.print(f"[bold]demo catalog:[/] {why}")
    tg = build(settings)
    try:
        if isinstance(source, list):
            items = [SourceItem(ref=str(p), title=p.stem.replace("_", " ")) for p in source]
            report = tg.catalog.ingest_items(items, source_label="samples")
        else:
            report = tg.catalog.ingest(str(source))
        console.print(
            f"{report.added} added, {report.skipped + report.existing} already there, "
            f"{report.rejected} rejected; {tg.store.count_pins()} pins in the catalog"
        )
    finally:
        tg.close()
    if serve:
        api = settings.api
        console.print(f"[bold green]serving on http://{api.host}:{api.port}[/] (Ctrl-C to stop)")
        run_server(settings)
