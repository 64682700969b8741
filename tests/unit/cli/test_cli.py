"""The ``tastegraph`` command on a small catalog with fake encoders (typer's CliRunner)."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner, Result

from tastegraph import cli
from tastegraph.app import App, build
from tastegraph.catalog.reencode import stale_vectors
from tastegraph.cli.render import ranker_verdict
from tastegraph.settings import Settings, get_settings
from tests.fakes import FakeImageEncoder, fake_encoders

COLOURS = {"red": (210, 30, 30), "blue": (30, 40, 210), "green": (30, 190, 40)}
# Hints a shell user cannot act on: routes, query strings, form fields.
HTTP_WORDING = re.compile(r"\b(GET|POST|PATCH|PUT|DELETE) /|\?\w+=|\b(attr|box|q)=")


def _fake_build(s: Settings) -> App:
    app = build(s, encoders=fake_encoders())
    return app


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data dir holding 4 pins of each colour and one half red, half blue ``split`` pin."""
    monkeypatch.setenv("TASTEGRAPH_INDEX_KIND", "exact")
    monkeypatch.setenv("TASTEGRAPH_WHITEN_MIN_PINS", "10000")
    monkeypatch.setattr(cli.common, "build_app", _fake_build)
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, rgb in COLOURS.items():
        for i in range(4):
            arr = np.clip(np.array(rgb) + rng.normal(0, 12, (48, 64, 3)), 0, 255)
            (folder / f"{name}-{i}.png").write_bytes(_png(arr))
    split = np.zeros((64, 128, 3))
    split[:, :64] = COLOURS["red"]
    split[:, 64:] = COLOURS["blue"]
    (folder / "split.png").write_bytes(_png(split))
    d = tmp_path / "data"
    app = _fake_build(get_settings(data_dir=d))
    try:
        assert app.catalog.ingest(str(folder), progress=False).added == 13
    finally:
        app.close()
    yield d


def run(*args: str | int | Path) -> Result:
    return CliRunner().invoke(cli.app, [str(a) for a in args])


def flat(text: str) -> str:
    """Console output with its wrapping undone (rich wraps at 80 columns under the runner)."""
    return " ".join(text.split())


def pin_of(data: Path, name: str) -> int:
    app = _fake_build(get_settings(data_dir=data))
    try:
        [pin] = [p for p in app.store.list_pins(limit=100) if Path(p.source).stem == name]
        return pin.id
    finally:
        app.close()


def colour(data: Path, pin_id: int) -> str:
    app = _fake_build(get_settings(data_dir=data))
    try:
        return Path(app.store.get_pin(pin_id).source).stem.split("-")[0]
    finally:
        app.close()


# ---------------------------------------------------------------------------------------------
# Hints: command-line wording at the command line


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (["search", " "], 'tastegraph search "red dress"'),
        (["search", "red", "--attr", "colour"], "--attr key:value"),
        (["users", "show", "999"], "tastegraph users create HANDLE"),
        (["users", "board", "999", "x"], "tastegraph users list"),
        (["boards", "show", "999"], "tastegraph boards list --user"),
        (["similar", "999"], "tastegraph search WORDS"),
        (["similar", "--image", "x.png", "--box", "1,2"], "--box x0,y0,x1,y1"),
    ],
)
def test_errors_give_command_line_hints(data: Path, args: list[str], wanted: str) -> None:
    r = run(*args, "--data", data)
    assert r.exit_code == 1, r.output
    text = flat(r.stderr)
    assert wanted in text
    assert not HTTP_WORDING.search(text), text


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    command=st.sampled_from(
        [
            ["search"],
            ["similar"],
            ["related"],
            ["feed"],
            ["users", "show"],
            ["boards", "show"],
            ["boards", "list", "--user"],
            ["save", "1"],
            ["users", "board"],
        ]
    ),
    value=st.one_of(
        st.integers(min_value=10**4, max_value=10**9).map(str),
        st.sampled_from(["", " ", "\t"]),
    ),
    attr=st.sampled_from([[], ["--attr", "nocolon"], ["--attr", ":x"]]),
)
def test_no_error_hint_at_the_command_line_is_http_wording(
    data: Path, command: list[str], value: str, attr: list[str]
) -> None:
    extra = attr if command == ["search"] else []
    tail = ["x"] if command == ["users", "board"] else []
    r = run(*command, value, *tail, *extra, "--data", data)
    assert r.exit_code != 0 or command == ["search"], r.output
    assert not HTTP_WORDING.search(flat(r.stderr)), r.stderr


def test_http_wording_hints_carry_a_cli_hint() -> None:
    """Every ``hint=`` in the source that names a route or query parameter has a ``cli_hint=``."""
    import ast

    src = Path(cli.__file__).parents[1]  # src/tastegraph
    missing = []
    for path in sorted(src.rglob("*.py")):
        if "api" in path.relative_to(src).parts:
            continue  # the API's own errors are only ever shown to HTTP callers
        tree = ast.parse(path.read_text())
        consts = {
            t.id: n.value.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets
            if isinstance(t, ast.Name) and isinstance(n.value.value, str)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            kws = {k.arg: k.value for k in node.keywords}
            hint = kws.get("hint")
            text = ""
            if isinstance(hint, ast.Constant) and isinstance(hint.value, str):
                text = hint.value
            elif isinstance(hint, ast.Name):
                text = consts.get(hint.id, "")
            elif isinstance(hint, ast.JoinedStr):
                text = "".join(str(v.value) for v in hint.values if isinstance(v, ast.Constant))
            if HTTP_WORDING.search(text) and "cli_hint" not in kws:
                missing.append(f"{path.relative_to(src)}:{node.lineno}: {text}")
    assert missing == []


# ---------------------------------------------------------------------------------------------
# Every `tastegraph ...` a hint or the README names exists


# A command written out in a hint without backticks: command words, flags, PLACEHOLDERS, {fields}.
_BARE_COMMAND = re.compile(r"\btastegraph((?: (?:--[\w-]+|[a-z][\w-]*|[A-Z][A-Z_]*|\{[^}]*\}))+)")


def _hint_texts(path: Path) -> list[tuple[int, str]]:
    """The literal text of every ``hint=`` and ``cli_hint=`` given in a source file."""
    import ast

    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        for k in node.keywords:
            if k.arg not in ("hint", "cli_hint"):
                continue
            if isinstance(k.value, ast.Constant) and isinstance(k.value.value, str):
                out.append((node.lineno, k.value.value))
            elif isinstance(k.value, ast.JoinedStr):
                parts = (v.value if isinstance(v, ast.Constant) else "{}" for v in k.value.values)
                out.append((node.lineno, "".join(map(str, parts))))
    return out


def _named_commands() -> list[tuple[str, str]]:
    """Every ``tastegraph ...`` the source (in backticks, or bare in a hint) and docs name."""
    repo = Path(cli.__file__).parents[3]
    found: list[tuple[str, str]] = []
    for path in sorted((repo / "src").rglob("*.py")):
        for m in re.finditer(r"`tastegraph ([^`]+)`", path.read_text()):
            found.append((path.name, m.group(1)))
        for line, text in _hint_texts(path):
            bare = re.sub(r"`[^`]*`", "", text)  # backticked ones are found above
            for m in _BARE_COMMAND.finditer(bare):
                found.append((f"{path.name}:{line}", m.group(1).strip()))
    for doc in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        text = doc.read_text()
        for m in re.finditer(r"`tastegraph ([^`]+)`", text):
            found.append((doc.name, m.group(1)))
        for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S):
            for m in re.finditer(r"^\s*tastegraph ([^#\n]+)", block, re.M):
                found.append((doc.name, m.group(1).rstrip(" \\")))
    return found


def _resolve(words: list[str]) -> str:
    """ "" when ``tastegraph WORDS`` names a command and options it has, else what is wrong."""
    import typer.main

    command: Any = typer.main.get_command(cli.app)
    rest = list(words)
    path: list[str] = []
    while rest and hasattr(command, "commands"):
        name = rest.pop(0)
        if name not in command.commands:
            return f"no command {' '.join([*path, name])!r}"
        path.append(name)
        command = command.commands[name]
    if hasattr(command, "commands"):
        return ""  # a group named on its own (`tastegraph users`)
    opts = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    for w in rest:
        if w.startswith("--"):
            flag = w.split("=", 1)[0]
            if flag not in opts:
                return f"{' '.join(path)} has no option {flag}"
    return ""


def test_every_named_command_and_flag_exists() -> None:
    named = _named_commands()
    assert len(named) > 20  # the README's command list is found
    wrong = []
    for where, text in named:
        words = [w for w in text.split() if not w.startswith("{")]
        problem = _resolve(words)
        if problem:
            wrong.append(f"{where}: `tastegraph {text}`: {problem}")
    assert wrong == []


def test_bare_commands_in_hints_are_found() -> None:
    named = {text for _, text in _named_commands()}
    assert "token list" in named  # store: "list them: tastegraph token list"
    assert "search" in named  # search: 'e.g. tastegraph search "red dress"'
    found = _BARE_COMMAND.findall("run tastegraph reindex --reencode, then tastegraph serve.")
    assert [f.strip() for f in found] == ["reindex --reencode", "serve"]


def test_resolve_catches_what_does_not_exist() -> None:
    assert _resolve(["reindex", "--reencodes"]) == "reindex has no option --reencodes"
    assert _resolve(["pins", "list"]).startswith("no command")
    assert _resolve(["users", "list", "--json"]) == ""
    assert _resolve(["boards", "list", "--user", "1"]) == ""


# ---------------------------------------------------------------------------------------------
# similar --box on a pin


def test_similar_box_searches_the_region_of_the_pins_image(data: Path) -> None:
    split = pin_of(data, "split")
    left = json.loads(run("similar", split, "--box", "0,0,64,64", "--json", "--data", data).stdout)
    right = json.loads(
        run("similar", split, "--box", "64,0,128,64", "--json", "--data", data).stdout
    )
    top_left = [r["pin"]["id"] for r in left["results"][:4]]
    top_right = [r["pin"]["id"] for r in right["results"][:4]]
    assert {colour(data, p) for p in top_left} == {"red"}
    assert {colour(data, p) for p in top_right} == {"blue"}
    assert split not in top_left + top_right


def test_similar_box_refuses_when_the_original_is_gone_or_changed(data: Path) -> None:
    split = pin_of(data, "split")
    source = data.parent / "imgs" / "split.png"
    source.write_bytes(_png(np.full((64, 128, 3), 90)))
    r = run("similar", split, "--box", "0,0,64,64", "--data", data)
    assert r.exit_code == 1 and "has changed since it was ingested" in flat(r.stderr)
    source.unlink()
    r = run("similar", split, "--box", "0,0,64,64", "--data", data)
    assert r.exit_code == 1 and "cannot be read" in flat(r.stderr)
    assert "tastegraph similar --image FILE --box" in flat(r.stderr)
    # Without --box the stored vector is enough.
    assert run("similar", split, "--data", data).exit_code == 0


def test_similar_refuses_a_pin_and_an_image_together(data: Path) -> None:
    r = run("similar", "1", "--image", "x.png", "--data", data)
    assert r.exit_code == 1 and "not both" in r.stderr


# ---------------------------------------------------------------------------------------------
# reindex


def test_reindex_prints_and_saves_what_it_indexed(data: Path) -> None:
    r = run("reindex", "--json", "--data", data)
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["indexes"]["image"]["size"] == 13
    assert body["indexes"]["conse"]["size"] == 13
    assert body["applied"]["image"] >= 13  # the whole log was replayed into the new index
    saved = data / "indexes" / "exact" / "image"
    assert saved.is_dir() and any(saved.iterdir())
    r = run("reindex", "--data", data)
    text = flat(r.stdout)
    assert r.exit_code == 0 and "{" not in text
    assert re.search(r"image\W+13\W+64\W+fake-image@1", text), text


class _OtherImageModel(FakeImageEncoder):
    """Another image model, as after changing TASTEGRAPH_IMAGE_MODEL."""

    model_id = "fake-image@2"

    def encode(self, pixels: Any) -> Any:
        out = super().encode(pixels)
        out.features[:] = out.features[:, ::-1]  # other vectors, same dimension
        return out


def _build_other_model(s: Settings) -> App:
    return build(s, encoders=dataclasses.replace(fake_encoders(), image=_OtherImageModel()))


def test_reindex_reencode_after_the_image_model_changed(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.common, "build_app", _build_other_model)
    red = pin_of(data, "red-0")
    r = run("similar", red, "--data", data)
    assert r.exit_code == 1 and "come from another model" in flat(r.stderr)
    assert "tastegraph reindex --reencode" in flat(r.stderr)

    r = run("reindex", "--reencode", "--json", "--data", data)
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["reencode"]["reencoded"]["image"] == 13 and body["reencode"]["failed"] == []
    assert body["indexes"]["image"]["size"] == 13
    assert body["indexes"]["image"]["model_id"] == "fake-image@2"
    app = _build_other_model(get_settings(data_dir=data))
    try:
        assert stale_vectors(app.catalog) == {}
    finally:
        app.close()
    assert run("similar", red, "--data", data).exit_code == 0


def test_reindex_reencode_reports_pins_it_cannot_redo(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = pin_of(data, "green-1")
    (data.parent / "imgs" / "green-1.png").unlink()
    monkeypatch.setattr(cli.common, "build_app", _build_other_model)
    r = run("reindex", "--reencode", "--data", data)
    assert r.exit_code == 3, r.output
    text = flat(r.stderr)
    assert "re-encoded 12 of 13 pins" in text and f"pin {gone}" in text and "no such file" in text
    app = _build_other_model(get_settings(data_dir=data))
    try:
        assert stale_vectors(app.catalog) == {gone: {"image"}}  # kept as it was, not half-done
    finally:
        app.close()


# ---------------------------------------------------------------------------------------------
# train and simulate


def test_train_prints_a_table_and_says_why_there_is_no_ranker(data: Path) -> None:
    r = run("train", "--data", data)
    assert r.exit_code == 0, r.output
    text = flat(r.stdout)
    assert "{" not in text and "events used" in text
    assert "not trained" in text and "needs at least 8" in text
    body = json.loads(run("train", "--json", "--data", data).stdout)
    assert body["ranker"] is False and "needs at least 8" in body["ranker_note"]


@given(
    events=st.integers(min_value=0, max_value=10**7),
    fraction=st.floats(min_value=0.1, max_value=0.9),
    groups=st.integers(min_value=0, max_value=10**4),
)
def test_ranker_verdict_always_says_why(events: int, fraction: float, groups: int) -> None:
    res = {"events": events, "ranker": groups > 0, "train_groups": groups, "train_rows": 2 * groups}
    text = ranker_verdict(res, fraction)
    if groups:
        assert text.startswith("trained") and f"{groups:,}" in text
    else:
        assert text.startswith("not trained") and re.search(r"\d", text)
        needed = -(-3 // 1) if fraction == 0 else int(np.ceil(3 / (1 - fraction)))
        if events < needed:
            assert f"at least {needed}" in text


def test_simulate_prints_a_table(data: Path) -> None:
    r = run("simulate", "--users", "12", "--sessions", "2", "--data", data / "none")
    assert r.exit_code == 0, r.output
    text = flat(r.stdout)
    assert "policy" in text and "tastegraph" in text and "popular" in text and "{" not in text
    body = json.loads(
        run(
            "simulate", "--users", "12", "--sessions", "2", "--json", "--data", data / "none"
        ).stdout
    )
    assert set(body["policies"]) >= {"popular", "tastegraph"}


# ---------------------------------------------------------------------------------------------
# feed / related --json give the API's pin objects


def test_feed_and_related_json_give_pin_objects_as_the_api(data: Path) -> None:
    from tastegraph.api.serialize import pin_json

    assert run("users", "create", "ann", "--data", data).stdout.strip() == "1"
    body = json.loads(run("feed", "1", "--n", "5", "--json", "--data", data).stdout)
    assert len(body["results"]) == 5 and "next_cursor" in body and "model" in body
    app = _fake_build(get_settings(data_dir=data))
    try:
        for item in body["results"]:
            assert item["pin"] == json.loads(
                json.dumps(pin_json(app.store.get_pin(item["pin"]["id"])))
            )
            assert item["reason"] and "score" in item
    finally:
        app.close()
    rel = json.loads(run("related", pin_of(data, "red-0"), "--json", "--data", data).stdout)
    assert rel["results"] and all(isinstance(x["pin"], dict) for x in rel["results"])
    table = flat(run("feed", "1", "--n", "5", "--data", data).stdout)
    assert "reason" in table


# ---------------------------------------------------------------------------------------------
# users and boards


def test_users_and_boards_can_be_listed_and_shown(data: Path) -> None:
    assert run("users", "list", "--data", data).exit_code == 0
    for handle in ("ann", "bob"):
        assert (
            run("users", "create", handle, "--name", handle.title(), "--data", data).exit_code == 0
        )
    board = run("users", "board", "1", "Reds", "--data", data).stdout.strip()
    red = pin_of(data, "red-0")
    assert run("save", board, red, "--data", data).exit_code == 0

    users = json.loads(run("users", "list", "--json", "--data", data).stdout)
    assert [u["handle"] for u in users["results"]] == ["ann", "bob"]
    assert "ann" in flat(run("users", "list", "--data", data).stdout)

    shown = json.loads(run("users", "show", "1", "--json", "--data", data).stdout)
    assert shown["handle"] == "ann" and [b["name"] for b in shown["boards"]] == ["Reds"]
    assert "Reds" in flat(run("users", "show", "1", "--data", data).stdout)
    assert "tastegraph users board 2 NAME" in flat(run("users", "show", "2", "--data", data).stderr)

    boards = json.loads(run("boards", "list", "--user", "1", "--json", "--data", data).stdout)
    assert [(b["name"], b["pins"]) for b in boards["results"]] == [("Reds", [red])]
    assert json.loads(run("boards", "list", "--user", "2", "--json", "--data", data).stdout) == {
        "results": []
    }
    one = json.loads(run("boards", "show", board, "--json", "--data", data).stdout)
    assert one["pins"] == [red] and one["user_id"] == 1
    shown_board = run("boards", "show", board, "--data", data).stdout
    assert "Reds" in shown_board and f"│ {red} " in shown_board
    r = run("boards", "list", "--user", "7", "--data", data)
    assert r.exit_code == 1 and "user 7 does not exist" in r.stderr


# ---------------------------------------------------------------------------------------------
# Reports as tables (eval commands)

_leaf = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.text(max_size=8), st.booleans(), st.none()
)
_report = st.recursive(
    st.dictionaries(st.text(alphabet="abcxyz_", min_size=1, max_size=6), _leaf, min_size=1),
    lambda inner: st.dictionaries(
        st.text(alphabet="abcxyz_", min_size=1, max_size=6), inner, min_size=1
    ),
    max_leaves=12,
)


def _leaves(obj: Any) -> int:
    return sum(_leaves(v) for v in obj.values()) if isinstance(obj, dict) and obj else 1


@given(_report)
def test_dict_table_has_a_row_per_figure(res: dict[str, Any]) -> None:
    from rich.console import Console

    from tastegraph.cli.render import dict_table

    table = dict_table(res, "report")
    assert table.row_count == _leaves(res)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table)
    text = console.export_text()
    for key in res:
        assert key in text


def test_duplicates_and_quarantine_json_are_shaped_as_the_api(data: Path) -> None:
    imgs = data.parent / "imgs"
    (imgs / "notes.txt").write_text("not an image")
    again = io.BytesIO()
    Image.open(imgs / "split.png").save(again, "JPEG", quality=80)  # a near-duplicate
    (imgs / "split-copy.jpg").write_bytes(again.getvalue())
    app = _fake_build(get_settings(data_dir=data))
    try:
        app.catalog.ingest(str(data.parent / "imgs"), progress=False)
    finally:
        app.close()
    dup = json.loads(run("duplicates", "--json", "--data", data).stdout)
    assert set(dup) == {"groups", "total"} and dup["total"] == len(dup["groups"]) >= 1
    assert all(set(g) == {"group", "pins"} and g["group"] == g["pins"][0] for g in dup["groups"])
    q = json.loads(run("quarantine", "--json", "--data", data).stdout)
    assert q["total"] == 1 and q["results"][0]["source"].endswith("notes.txt")


# ---------------------------------------------------------------------------------------------
# Ids: any integer is a clear answer, never a traceback

ID_COMMANDS = [
    ["similar", "{}"],
    ["related", "{}"],
    ["feed", "{}"],
    ["users", "show", "{}"],
    ["users", "board", "{}", "x"],
    ["boards", "show", "{}"],
    ["boards", "list", "--user", "{}"],
    ["save", "{}", "1"],
    ["save", "1", "{}"],
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    command=st.sampled_from(ID_COMMANDS),
    value=st.one_of(
        st.integers(min_value=2**63, max_value=10**40),
        st.integers(min_value=-(10**30), max_value=0),
        st.integers(min_value=10**4, max_value=2**63 - 1),
    ),
)
def test_any_id_gets_a_clear_answer(data: Path, command: list[str], value: int) -> None:
    r = run(*(w.format(value) for w in command), "--data", data)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    text = flat(r.output)
    if 1 <= value < 2**63:
        assert r.exit_code == 1 and "does not exist" in text, text
    else:
        assert r.exit_code == 2, text  # a usage error that names the argument
