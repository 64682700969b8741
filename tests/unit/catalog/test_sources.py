"""Enumerating sources: folders, CSV/TSV and JSONL manifests, single files and URLs."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tastegraph.catalog.sources import SourceError, SourceItem, iter_source
from tastegraph.errors import InvalidInput
from tests import fixtures as fx


def items(source: str | Path) -> list[SourceItem | SourceError]:
    return list(iter_source(source))


def only_items(source: str | Path) -> list[SourceItem]:
    out = items(source)
    assert all(isinstance(i, SourceItem) for i in out), out
    return out  # type: ignore[return-value]


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


# ---------------------------------------------------------------------------------------------
# Folders


def test_folder_is_walked_recursively_in_sorted_order(tmp_path: Path) -> None:
    jpg = fx.jpeg_bytes(16, 16)
    for name in [
        "b.PNG",
        "a.jpg",
        "sub/c.JPEG",
        "sub/deeper/d.webp",
        "z.tif",
        "notes.txt",  # unknown extensions are yielded, to be quarantined with a reason
        ".hidden.jpg",
        ".git/objects/x.jpg",
        "Thumbs.db",
    ]:
        write(tmp_path / name, jpg)
    refs = [i.ref for i in only_items(tmp_path)]
    rel = [Path(r).relative_to(tmp_path).as_posix() for r in refs]
    assert rel == ["a.jpg", "b.PNG", "notes.txt", "sub/c.JPEG", "sub/deeper/d.webp", "z.tif"]
    assert all(Path(r).is_absolute() for r in refs)
    assert all(i.row == 0 and i.title == "" and i.tags == [] for i in only_items(tmp_path))


def test_relative_folder_gives_absolute_refs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "imgs" / "a.jpg", b"x")
    monkeypatch.chdir(tmp_path)
    [item] = only_items("imgs")
    assert item.ref == str(tmp_path / "imgs" / "a.jpg")


def test_unreadable_subfolder_is_reported(tmp_path: Path) -> None:
    import os

    locked = tmp_path / "locked"
    write(locked / "a.jpg", b"x")
    write(tmp_path / "b.jpg", b"x")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as a user that ignores permissions")
        out = items(tmp_path)
    finally:
        locked.chmod(0o755)
    assert isinstance(out[0], SourceError) and out[0].ref == str(locked)
    assert [i.ref for i in out[1:]] == [str(tmp_path / "b.jpg")]


def test_empty_folder(tmp_path: Path) -> None:
    assert items(tmp_path) == []


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        items(tmp_path / "nope")


def test_single_file_and_url(tmp_path: Path) -> None:
    p = write(tmp_path / "one.jpg", b"x")
    assert [i.ref for i in only_items(p)] == [str(p)]
    assert [i.ref for i in only_items("https://example.com/a.jpg")] == ["https://example.com/a.jpg"]


def test_json_is_not_jsonl(tmp_path: Path) -> None:
    p = write(tmp_path / "m.json", '[{"image": "a.jpg"}]')
    with pytest.raises(InvalidInput, match="JSON Lines"):
        items(p)


def test_items_pickle() -> None:
    # Ingest sends items to worker processes.
    item = SourceItem(ref="a.jpg", tags=["x"], attributes={"n": 1}, row=3)
    assert pickle.loads(pickle.dumps(item)) == item
    err = SourceError(4, "bad", ref="b.jpg")
    assert pickle.loads(pickle.dumps(err)) == err


# ---------------------------------------------------------------------------------------------
# CSV


def test_csv_fields_tags_attributes_and_refs(tmp_path: Path) -> None:
    p = write(
        tmp_path / "m" / "pins.csv",
        "image,title,description,link,board,tags,price,qty,sku,on_sale,colour,note\n"
        'shoes/red.jpg,Red sneaker,Comfy,https://shop/x,Shoes,"red, sport|summer;red",'
        "59.90,3,00123,TRUE,red,\n"
        "/abs/blue.png,,,,,,1e5,-4,0,false,,\n"
        "https://cdn.example.com/a.jpg,Bag,,,,,,,,,,\n",
    )
    a, b, c = only_items(p)
    assert a.ref == str(tmp_path / "m" / "shoes" / "red.jpg")  # relative to the manifest
    assert (a.title, a.description, a.link, a.board) == (
        "Red sneaker",
        "Comfy",
        "https://shop/x",
        "Shoes",
    )
    assert a.tags == ["red", "sport", "summer"]
    assert a.attributes == {
        "price": 59.9,
        "qty": 3,
        "sku": "00123",
        "on_sale": True,
        "colour": "red",
    }
    assert a.row == 2
    assert b.ref == "/abs/blue.png"
    assert b.attributes == {"price": "1e5", "qty": -4, "sku": 0, "on_sale": False}
    assert b.tags == [] and b.title == ""
    assert c.ref == "https://cdn.example.com/a.jpg" and c.row == 4


@pytest.mark.parametrize("column", ["image", "IMAGE", " Path ", "url", "Image_URL", "file"])
def test_csv_image_column_aliases(tmp_path: Path, column: str) -> None:
    p = write(tmp_path / "m.csv", f"{column},Title\na.jpg,A\n")
    [item] = only_items(p)
    assert item.ref == str(tmp_path / "a.jpg") and item.title == "A"


def test_csv_preferred_image_column_and_other_aliases_kept(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", "url,image\nhttps://shop/page,a.jpg\n")
    [item] = only_items(p)
    assert item.ref == str(tmp_path / "a.jpg")
    assert item.attributes == {"url": "https://shop/page"}


def test_csv_without_image_column(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", "picture,title\na.jpg,A\n")
    with pytest.raises(InvalidInput, match="no image column") as info:
        items(p)
    assert "image_url" in info.value.hint


def test_csv_duplicate_columns(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", "image,Title,title\na.jpg,A,B\n")
    with pytest.raises(InvalidInput, match="two columns"):
        items(p)


def test_csv_bad_rows_are_reported_and_skipped(tmp_path: Path) -> None:
    p = write(
        tmp_path / "m.csv",
        "image,title\n"
        "a.jpg,A\n"
        "b.jpg,B,extra\n"  # ragged: too many
        "c.jpg\n"  # ragged: too few
        ",D\n"  # no image
        "\n"  # blank lines are skipped
        '"e.jpg","multi\nline"\n'
        "f.jpg,F\n",
    )
    out = items(p)
    assert [type(o).__name__ for o in out] == [
        "SourceItem",
        "SourceError",
        "SourceError",
        "SourceError",
        "SourceItem",
        "SourceItem",
    ]
    errors = [o for o in out if isinstance(o, SourceError)]
    assert [e.row for e in errors] == [3, 4, 5]
    assert "3 fields" in errors[0].message and "no value" in errors[2].message
    good = [o for o in out if isinstance(o, SourceItem)]
    assert [g.row for g in good] == [2, 7, 9]
    assert good[1].title == "multi\nline"


def test_csv_bom_and_crlf(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", "\ufeffImage,Title\r\na.jpg,A\r\nb.jpg,B\r\n".encode())
    assert [i.title for i in only_items(p)] == ["A", "B"]


def test_csv_non_utf8_row(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", b"image,title\na.jpg,caf\xe9\nb.jpg,ok\n")
    out = items(p)
    assert isinstance(out[0], SourceError) and "UTF-8" in out[0].message and out[0].row == 2
    assert isinstance(out[1], SourceItem) and out[1].title == "ok"


def test_csv_non_utf8_header(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", b"image,t\xeftle\na.jpg,x\n")
    with pytest.raises(InvalidInput, match="UTF-8"):
        items(p)


def test_csv_nul_byte_row_does_not_stop_the_file(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", b"image,title\na.jpg,A\nb\x00.jpg,B\nc.jpg,C\n")
    out = items(p)
    kinds = [type(o).__name__ for o in out]
    assert kinds[0] == "SourceItem" and kinds[-1] == "SourceItem"
    assert [o.title for o in out if isinstance(o, SourceItem)][-1] == "C"


def test_csv_oversized_field_does_not_stop_the_file(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", "image,title\na.jpg,A\nb.jpg," + "x" * 200_000 + "\nc.jpg,C\n")
    out = items(p)
    assert isinstance(out[1], SourceError) and out[1].row == 3
    assert isinstance(out[-1], SourceItem) and out[-1].title == "C"


@pytest.mark.parametrize("text", ["", "\n\n", "image,title\n", "\ufeffimage,title\n"])
def test_empty_csv(tmp_path: Path, text: str) -> None:
    assert items(write(tmp_path / "m.csv", text)) == []


def test_semicolon_and_tab_delimiters(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", "image;title;price\na.jpg;A;1,5\n")
    [item] = only_items(p)
    assert item.title == "A" and item.attributes == {"price": "1,5"}
    t = write(tmp_path / "m.tsv", "image\ttitle\ttags\na.jpg\tA, B\tx,y\n")
    [item] = only_items(t)
    assert item.title == "A, B" and item.tags == ["x", "y"]


# ---------------------------------------------------------------------------------------------
# JSONL


def test_jsonl_fields_and_attributes(tmp_path: Path) -> None:
    p = write(
        tmp_path / "m" / "pins.jsonl",
        '{"Image": "a.jpg", "title": "A", "tags": ["x", "y", "x", 3], "price": 9.5, '
        '"stock": 2, "new": true, "sizes": ["S", "M"], "dims": {"w": 1}, "gone": null}\n'
        "\n"
        '{"url": "https://cdn/b.png", "tags": "p|q; r", "board": "Bags", "title": 42}\n',
    )
    a, b = only_items(p)
    assert a.ref == str(tmp_path / "m" / "a.jpg") and a.title == "A" and a.row == 1
    assert a.tags == ["x", "y", "3"]
    assert a.attributes == {
        "price": 9.5,
        "stock": 2,
        "new": True,
        "sizes": '["S","M"]',
        "dims": '{"w":1}',
    }
    assert b.ref == "https://cdn/b.png" and b.row == 3
    assert b.tags == ["p", "q", "r"] and b.board == "Bags" and b.title == "42"


def test_jsonl_bad_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    p = write(
        tmp_path / "m.ndjson",
        '{"image": "a.jpg"}\n'
        "{not json\n"
        "[1, 2]\n"
        '{"title": "no image"}\n'
        '{"image": 5}\n'
        '{"image": "b.jpg", "IMAGE": "c.jpg"}\n'
        '{"image": "d.jpg", "tags": {"a": 1}}\n'
        '{"image": "e.jpg", "title": ["x"]}\n'
        '{"image": "f.jpg", "price": NaN}\n'
        '{"image": "g.jpg"}\n',
    )
    out = items(p)
    errors = [o for o in out if isinstance(o, SourceError)]
    good = [o for o in out if isinstance(o, SourceItem)]
    assert [g.row for g in good] == [1, 10]
    assert [e.row for e in errors] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "not valid JSON" in errors[0].message
    assert "not an object" in errors[1].message
    assert "no image" in errors[2].message and "no image" in errors[3].message
    assert "twice" in errors[4].message


def test_jsonl_bom_and_bad_utf8(tmp_path: Path) -> None:
    p = write(tmp_path / "m.jsonl", b'\xef\xbb\xbf{"image": "a.jpg"}\n{"image": "\xff.jpg"}\n')
    out = items(p)
    assert isinstance(out[0], SourceItem) and out[0].ref.endswith("a.jpg")
    assert isinstance(out[1], SourceError) and "UTF-8" in out[1].message


def test_jsonl_that_is_a_json_document(tmp_path: Path) -> None:
    p = write(tmp_path / "m.jsonl", '[\n  {"image": "a.jpg"}\n]\n')
    with pytest.raises(InvalidInput, match="JSON Lines"):
        items(p)


def test_empty_jsonl(tmp_path: Path) -> None:
    assert items(write(tmp_path / "m.jsonl", "")) == []
    assert items(write(tmp_path / "n.jsonl", "\n  \n")) == []
