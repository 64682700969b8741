"""The HTTP API in process (real store, real decoding, fake encoders for speed)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tastegraph.api import create_api
from tastegraph.app import App
from tests import fixtures as fx


def solid(color: tuple[int, int, int], size: tuple[int, int] = (120, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture
def client(fake_app: App) -> Iterator[TestClient]:
    with TestClient(create_api(fake_app)) as c:
        yield c


@pytest.fixture
def tokens(fake_app: App) -> dict[str, dict[str, str]]:
    out = {}
    for role in ("viewer", "editor", "admin"):
        _, secret = fake_app.store.create_token(role, role)
        out[role] = {"Authorization": f"Bearer {secret}"}
    return out


def upload(c: TestClient, data: bytes, headers: dict[str, str], **form: str) -> dict:  # type: ignore[type-arg]
    r = c.post(
        "/pins/upload", files={"file": ("x.jpg", data, "image/jpeg")}, data=form, headers=headers
    )
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def assert_error(r: object, status: int, code: str) -> dict:  # type: ignore[type-arg]
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def test_health_ready_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    schema = client.get("/openapi.json").json()
    for path in ("/pins", "/pins/upload", "/search", "/pins/{pin_id}/similar", "/search/image",
                 "/duplicates", "/ready", "/tokens"):  # fmt: skip
        assert path in schema["paths"], path
    client.get("/search", params={"q": "x"})  # loads models + indexes
    assert client.get("/ready").json()["ready"] is True


def test_writes_need_editor(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    data = solid((200, 20, 20))
    files = {"file": ("x.jpg", data, "image/jpeg")}
    assert_error(client.post("/pins/upload", files=files), 401, "unauthorized")
    assert_error(
        client.post("/pins/upload", files=files, headers=tokens["viewer"]), 403, "forbidden"
    )
    bad = {"Authorization": "Bearer nope"}
    assert_error(client.post("/pins/upload", files=files, headers=bad), 401, "unauthorized")
    assert_error(
        client.post("/pins/upload", files=files, headers={"Authorization": "Basic x"}),
        401,
        "unauthorized",
    )
    body = upload(client, data, tokens["editor"], title="Red")
    assert body["created"] is True and body["pin"]["title"] == "Red"


def test_reupload_is_idempotent(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    data = solid((10, 200, 10))
    first = upload(client, data, tokens["editor"])
    r = client.post("/pins/upload", files={"file": ("y.jpg", data, "image/jpeg")},
                    headers=tokens["editor"])  # fmt: skip
    assert r.status_code == 200 and r.json()["created"] is False
    assert r.json()["pin"]["id"] == first["pin"]["id"]
    assert client.get("/pins").json()["total"] == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (fx.truncated_jpeg(), "truncated"),
        (fx.html_bytes(), "not_an_image"),
        (fx.pdf_bytes(), "unsupported_format"),
        (fx.bomb_png(), "too_many_pixels"),
        (b"", "not_an_image"),
    ],
)
def test_bad_uploads_get_clear_errors(
    client: TestClient, tokens: dict[str, dict[str, str]], data: bytes, reason: str
) -> None:
    r = client.post("/pins/upload", files={"file": ("bad", data, "image/jpeg")},
                    headers=tokens["editor"])  # fmt: skip
    err = assert_error(r, 422, "invalid_input")
    assert err["details"]["reason"] in (reason, "decompression_bomb")
    assert client.get("/pins").json()["total"] == 0


def test_oversized_request_is_refused(fake_app: App, tokens: dict[str, dict[str, str]]) -> None:
    fake_app.settings.api.max_upload_bytes = 50_000
    with TestClient(create_api(fake_app)) as c:
        big = fx.jpeg_bytes(900, 900, quality=100)
        assert len(big) > 50_000
        r = c.post("/pins/upload", files={"file": ("big.jpg", big, "image/jpeg")},
                   headers=tokens["editor"])  # fmt: skip
        assert_error(r, 413, "payload_too_large")


def test_unknown_ids_and_routes(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    assert_error(client.get("/pins/999"), 404, "not_found")
    assert_error(client.get("/pins/999/similar"), 404, "not_found")
    assert_error(client.delete("/pins/999", headers=tokens["editor"]), 404, "not_found")
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/pins/abc"), 404, "not_found")  # ids are digits: no such route
    assert_error(client.get("/pins/0"), 422, "invalid_input")
    assert_error(client.get("/pins/99999999999999999999999"), 422, "invalid_input")
    assert_error(client.get("/search", params={"q": "x", "limit": 0}), 422, "invalid_input")


def test_similar_and_search_by_image(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    red = upload(client, solid((220, 30, 30)), tokens["editor"], title="red one")["pin"]["id"]
    upload(client, solid((200, 40, 40), (100, 100)), tokens["editor"], title="red two")
    upload(client, solid((20, 30, 220)), tokens["editor"], title="blue one")
    r = client.get(f"/pins/{red}/similar").json()
    ids = [x["pin"]["id"] for x in r["results"]]
    assert red not in ids and r["results"][0]["pin"]["title"] == "red two"
    assert r["results"][0]["signals"] is None  # raw scores only on request
    r = client.get(f"/pins/{red}/similar", params={"explain": "true"}).json()
    assert "image" in r["results"][0]["signals"]
    r = client.post("/search/image", files={"file": ("q.jpg", solid((30, 30, 210)), "image/jpeg")})
    assert r.json()["results"][0]["pin"]["title"] == "blue one"
    # a region: left half red, right half blue -> the red pins rank first
    img = Image.new("RGB", (200, 100), (20, 30, 220))
    img.paste((220, 30, 30), (0, 0, 100, 100))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    r = client.post("/search/image", files={"file": ("q.png", buf.getvalue(), "image/png")},
                    data={"box": "0,0,100,100"})  # fmt: skip
    assert r.json()["results"][0]["pin"]["title"].startswith("red")
    bad = client.post("/search/image", files={"file": ("q.png", buf.getvalue(), "image/png")},
                      data={"box": "0,0,5000,100"})  # fmt: skip
    assert_error(bad, 422, "invalid_input")
    assert_error(client.post("/search/image", data={"url": "file:///etc/passwd"}), 422,
                 "invalid_input")  # fmt: skip
    assert_error(client.post("/search/image"), 422, "invalid_input")


def test_text_search_filters_pagination(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    for i in range(5):
        upload(client, fx.jpeg_bytes(80, 60, seed=i), tokens["editor"],
               title=f"linen dress {i}", board="summer" if i % 2 else "winter")  # fmt: skip
    r = client.get("/search", params={"q": "linen dress", "limit": 2}).json()
    assert r["total"] >= 5 and len(r["results"]) == 2 and r["next_offset"] == 2
    assert r["results"][0]["signals"] is None
    r = client.get("/search", params={"q": "linen dress", "limit": 2, "explain": True}).json()
    assert "bm25" in r["results"][0]["signals"]
    r2 = client.get("/search", params={"q": "linen dress", "limit": 2, "offset": 2}).json()
    assert not {x["pin"]["id"] for x in r["results"]} & {x["pin"]["id"] for x in r2["results"]}
    r = client.get("/search", params={"q": "linen", "board": "summer"}).json()
    assert {x["pin"]["board"] for x in r["results"]} == {"summer"}
    assert client.get("/search", params={"q": "linen", "board": "none"}).json()["total"] == 0
    assert_error(client.get("/search", params={"q": "x", "attr": "nocolon"}), 422, "invalid_input")


def test_unrelated_words_find_little(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    for i in range(4):
        upload(client, fx.jpeg_bytes(80, 60, seed=10 + i), tokens["editor"], title=f"boot {i}")
    r = client.get("/search", params={"q": "quantum chromodynamics"}).json()
    assert r["total"] < 4


@pytest.mark.parametrize(
    "edit",
    [{"title": "a\u0000b"}, {"tags": ["ok", "b\u0000"]}, {"attributes": {"k\u0000": "v"}}],
    ids=["title", "tags", "attribute key"],
)
def test_a_nul_in_an_edit_is_the_same_422_on_every_store(
    client: TestClient, tokens: dict[str, dict[str, str]], edit: dict[str, object]
) -> None:
    # PostgreSQL's text and JSONB cannot hold NUL and SQLite can: both refuse it alike
    # (run with TASTEGRAPH_TEST_STORE=postgresql for the other store).
    pid = upload(client, solid((20, 120, 120)), tokens["editor"], title="kept")["pin"]["id"]
    body = assert_error(client.patch(f"/pins/{pid}", json=edit, headers=tokens["editor"]), 422,
                        "invalid_input")  # fmt: skip
    assert "NUL character" in body["message"] and "remove the NUL" in body["hint"]
    assert client.get(f"/pins/{pid}").json()["title"] == "kept"


def test_update_and_delete(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    pid = upload(client, solid((120, 120, 20)), tokens["editor"], title="old")["pin"]["id"]
    other = upload(client, solid((125, 118, 25), (90, 90)), tokens["editor"])["pin"]["id"]
    assert_error(client.patch(f"/pins/{pid}", json={"title": "x"}), 401, "unauthorized")
    r = client.patch(f"/pins/{pid}", json={"title": "velvet jacket"}, headers=tokens["editor"])
    assert r.status_code == 200 and r.json()["title"] == "velvet jacket"
    assert client.get("/search", params={"q": "velvet"}).json()["results"][0]["pin"]["id"] == pid
    r = client.patch(f"/pins/{pid}", json={"content_hash": "x"}, headers=tokens["editor"])
    assert r.status_code == 422
    assert client.delete(f"/pins/{pid}", headers=tokens["editor"]).status_code == 204
    assert_error(client.get(f"/pins/{pid}"), 404, "not_found")
    ids = [x["pin"]["id"] for x in client.get(f"/pins/{other}/similar").json()["results"]]
    assert pid not in ids
    assert client.get("/search", params={"q": "velvet"}).json()["total"] == 0


def test_thumbnail(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    pid = upload(client, fx.jpeg_bytes(800, 400), tokens["editor"])["pin"]["id"]
    r = client.get(f"/pins/{pid}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/")
    im = Image.open(io.BytesIO(r.content))
    assert max(im.size) == 256 and im.size[0] == 2 * im.size[1]


def test_thumbnail_is_cached_by_content_not_by_id(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    """Issue 15 defect 2: a thumbnail URL names the image, so an id never shows a stale one."""
    first = upload(client, solid((10, 10, 240)), tokens["editor"])["pin"]
    url = first["thumbnail_url"]
    assert url.startswith(f"/pins/{first['id']}/thumbnail?v=")
    assert first["content_hash"].startswith(url.split("v=")[1])
    r = client.get(url)
    assert "immutable" in r.headers["cache-control"]
    etag = r.headers["etag"]
    # Any other URL for the id revalidates, and a current copy is answered with 304.
    bare = client.get(f"/pins/{first['id']}/thumbnail")
    assert bare.headers["cache-control"] == "no-cache" and bare.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    client.delete(f"/pins/{first['id']}", headers=tokens["editor"])
    second = upload(client, solid((240, 10, 10)), tokens["editor"])["pin"]
    assert second["id"] != first["id"] and second["thumbnail_url"] != url
    assert_error(client.get(url), 404, "not_found")
    r = client.get(f"/pins/{second['id']}/thumbnail", headers={"If-None-Match": etag})
    assert r.status_code == 200 and r.headers["etag"] != etag


def test_duplicates_grouped(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    base = fx.photo_array(400, 300, seed=3)
    a = io.BytesIO()
    Image.fromarray(base).save(a, "JPEG", quality=95)
    b = io.BytesIO()
    Image.fromarray(base).resize((200, 150)).save(b, "JPEG", quality=70)
    p1 = upload(client, a.getvalue(), tokens["editor"])["pin"]["id"]
    p2 = upload(client, b.getvalue(), tokens["editor"])["pin"]["id"]
    upload(client, fx.jpeg_bytes(400, 300, seed=99), tokens["editor"])
    groups = client.get("/duplicates").json()["groups"]
    assert groups == [{"group": p1, "pins": [p1, p2]}]


def test_admin_reads_are_audited(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    assert_error(client.get("/tokens", headers=tokens["editor"]), 403, "forbidden")
    assert_error(client.get("/audit"), 401, "unauthorized")
    r = client.get("/tokens", headers=tokens["admin"]).json()
    assert all("token_hash" not in t and "token" not in t for t in r["results"])
    made = client.post("/tokens", json={"name": "bot", "role": "viewer"}, headers=tokens["admin"])
    assert made.status_code == 201 and made.json()["token"].startswith("tg_")
    audit = client.get("/audit", headers=tokens["admin"]).json()["results"]
    assert {"tokens", f"token:{made.json()['id']}"} <= {a["target"] for a in audit}
    assert client.get("/quarantine", headers=tokens["viewer"]).status_code == 403


def test_anonymous_read_can_be_disabled(fake_app: App, tokens: dict[str, dict[str, str]]) -> None:
    fake_app.settings.api.allow_anonymous_read = False
    with TestClient(create_api(fake_app)) as c:
        assert_error(c.get("/pins"), 401, "unauthorized")
        assert c.get("/pins", headers=tokens["viewer"]).status_code == 200


def test_web_page(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and 'id="q"' in r.text and "/static/app.js" in r.text
    assert client.get("/static/app.js").status_code == 200


def test_a_deleted_pins_id_is_never_given_again(
    client: TestClient, tokens: dict[str, dict[str, str]], fake_app: App
) -> None:
    """Issue 15 defect 2: the next pin gets a new id, so it inherits no saves, clicks or index
    entries of the deleted one."""
    ed = tokens["editor"]
    keep = upload(client, solid((30, 200, 30)), ed, title="keep")["pin"]["id"]
    gone = upload(client, solid((200, 30, 200)), ed, title="gone orchid")["pin"]["id"]
    user = client.post("/users", json={"handle": "ann"}, headers=ed).json()["id"]
    board = client.post(f"/users/{user}/boards", json={"name": "b"}, headers=ed).json()["id"]
    assert (
        client.post(f"/boards/{board}/pins", json={"pin_id": gone}, headers=ed).status_code == 200
    )
    click = {"user_id": user, "pin_id": gone, "kind": "click", "ts": "2024-01-02T03:04:05Z"}
    assert client.post("/events", json={"events": [click]}, headers=ed).json()["accepted"] == 1
    assert client.delete(f"/pins/{gone}", headers=ed).status_code == 204
    new = upload(client, solid((200, 200, 30)), ed, title="new")["pin"]["id"]
    assert new > gone > keep
    assert client.get(f"/boards/{board}").json()["pins"] == []
    assert all(e["pin_id"] != new for e in fake_app.store.events_since(0))  # the click stays gone's
    assert client.get("/search", params={"q": "orchid"}).json()["total"] == 0
    sims = client.get(f"/pins/{keep}/similar").json()["results"]
    assert {r["pin"]["id"] for r in sims} == {new}
