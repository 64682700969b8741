"""Typed, nested settings with one precedence chain.

defaults < ``tastegraph.toml`` (in the working directory or ``TASTEGRAPH_CONFIG``)
< ``TASTEGRAPH_*`` environment variables < explicit keyword arguments (how CLI flags arrive).

Settings come in sections (``store``, ``models``, ``index``, ``search``, ``ingest``, ``events``,
``feed``, ``api``); ``data_dir`` and ``eval_data`` sit at the top. A field is set in the file as
a table (``[feed]`` then ``explore_share_min = 0.05``) and in the environment as
``TASTEGRAPH_<SECTION>_<FIELD>`` (``TASTEGRAPH_FEED_EXPLORE_SHARE_MIN``). The flat names of
before the sections (``port``, ``image_model``, ``TASTEGRAPH_PORT``...; see
:data:`~tastegraph.settings.sections.LEGACY`) keep working as keyword arguments, top-level keys
of the file and environment variables.

>>> s = Settings(port=9000, feed={"n_fresh": 0})
>>> (s.api.port, s.feed.n_fresh, s.index.kind)
(9000, 0, 'auto')
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tastegraph.errors import InvalidSetting
from tastegraph.settings.feed import FeedSettings
from tastegraph.settings.limits import LimitsSettings
from tastegraph.settings.sections import (
    LEGACY,
    ApiSettings,
    EventsSettings,
    IndexSettings,
    IngestSettings,
    ModelsSettings,
    SearchSettings,
    StoreSettings,
)

__all__ = [
    "LEGACY",
    "ApiSettings",
    "EventsSettings",
    "FeedSettings",
    "IndexSettings",
    "IngestSettings",
    "LimitsSettings",
    "ModelsSettings",
    "SearchSettings",
    "Settings",
    "StoreSettings",
    "accepted",
    "env_var",
    "get_settings",
    "legacy_env_var",
    "setting_fields",
    "setting_sources",
]

DEFAULT_DATA_DIR = Path("tastegraph-data")
PREFIX = "TASTEGRAPH_"


class Settings(BaseSettings):
    """Every knob of tastegraph; each field's description is its documentation."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        description="Folder holding the database, indexes, thumbnails, model exports and logs.",
    )
    eval_data: Path = Field(
        Path("../shared/data"), description="Folder with the evaluation data sets."
    )
    store: StoreSettings = Field(default_factory=StoreSettings, description=StoreSettings.__doc__)
    models: ModelsSettings = Field(
        default_factory=ModelsSettings, description=ModelsSettings.__doc__
    )
    index: IndexSettings = Field(default_factory=IndexSettings, description=IndexSettings.__doc__)
    search: SearchSettings = Field(
        default_factory=SearchSettings, description=SearchSettings.__doc__
    )
    ingest: IngestSettings = Field(
        default_factory=IngestSettings, description=IngestSettings.__doc__
    )
    events: EventsSettings = Field(
        default_factory=EventsSettings, description=EventsSettings.__doc__
    )
    feed: FeedSettings = Field(default_factory=FeedSettings, description=FeedSettings.__doc__)
    api: ApiSettings = Field(default_factory=ApiSettings, description=ApiSettings.__doc__)
    limits: LimitsSettings = Field(
        default_factory=LimitsSettings, description=LimitsSettings.__doc__
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_path())
        return (
            _Nested(settings_cls, init_settings),
            env_settings,
            _LegacyEnv(settings_cls),
            _Nested(settings_cls, toml),
        )

    @property
    def resolved_store_url(self) -> str:
        if self.store.url:
            return self.store.url
        return f"sqlite:///{(self.data_dir / 'tastegraph.db').resolve()}"

    def updated(self, **changes: Any) -> Settings:
        """A validated copy with ``changes`` (flat legacy names, top-level fields or section
        dicts merged into the section), reading no file or environment again.

        >>> Settings().updated(index_kind="exact", feed={"seed": 3}).feed.seed
        3
        """
        return Settings.model_validate(_deep_merge(self.model_dump(), nest_legacy(changes)))

    def value(self, path: str) -> Any:
        """The value at a dotted path (``"api.port"``) or a flat legacy name (``"port"``)."""
        obj: Any = self
        for part in _path(path).split("."):
            obj = getattr(obj, part)
        return obj

    def digest(self, *fields: str) -> str:
        """A short stable hash of the named settings, recorded on derived artefacts.

        Fields are dotted paths (``"index.kind"``) or flat legacy names; each is hashed under
        its legacy name when it has one, so a digest recorded before the sections existed
        still matches the same values.
        """
        values: dict[str, Any] = {_hash_key(f): self.value(f) for f in fields}
        blob = json.dumps(values, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


_PATH_OF = {name: f"{section}.{field}" for name, (section, field) in LEGACY.items()}
_LEGACY_OF = {path: name for name, path in _PATH_OF.items()}


def _path(name: str) -> str:
    return _PATH_OF.get(name, name)


def _hash_key(name: str) -> str:
    return _LEGACY_OF.get(_path(name), _path(name))


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def nest_legacy(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with flat legacy keys moved into their sections (a flat key wins over the
    same field in a section table of the same source)."""
    out: dict[str, Any] = {}
    moved: dict[str, dict[str, Any]] = {}
    for k, v in values.items():
        if k in LEGACY:
            section, field = LEGACY[k]
            moved.setdefault(section, {})[field] = v
        else:
            out[k] = v
    return _deep_merge(out, moved)


class _Nested(PydanticBaseSettingsSource):
    """Another source's values with flat legacy keys moved into their sections."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self.inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ delegates

    def __call__(self) -> dict[str, Any]:
        return nest_legacy(self.inner())


def _environ() -> dict[str, str]:
    return {k.upper(): v for k, v in os.environ.items()}


class _LegacyEnv(PydanticBaseSettingsSource):
    """``TASTEGRAPH_<FLAT NAME>`` variables of before the sections (``TASTEGRAPH_PORT``)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env = _environ()
        out: dict[str, dict[str, Any]] = {}
        for name, (section, field) in LEGACY.items():
            var = f"{PREFIX}{name.upper()}"
            if var in env and var != env_var(f"{section}.{field}"):
                out.setdefault(section, {})[field] = env[var]
        return dict(out)


def env_var(path: str) -> str:
    """The environment variable of a setting: ``"api.port"`` -> ``TASTEGRAPH_API_PORT``."""
    return PREFIX + _path(path).replace(".", "_").upper()


def legacy_env_var(path: str) -> str | None:
    """The flat variable of before the sections, where it differs (``TASTEGRAPH_PORT``)."""
    name = _LEGACY_OF.get(_path(path))
    if name is None or PREFIX + name.upper() == env_var(path):
        return None
    return PREFIX + name.upper()


def setting_fields() -> dict[str, FieldInfo]:
    """Every leaf setting by dotted path, in the order of the model (top-level ones first)."""
    out: dict[str, FieldInfo] = {}
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            for sub, info in section.model_fields.items():
                out[f"{name}.{sub}"] = info
        else:
            out[name] = field
    return out


def get_settings(**overrides: Any) -> Settings:
    """Settings from all sources, with ``overrides`` (CLI flags) winning; ``None`` means unset.

    A bad value or an unknown key raises :class:`~tastegraph.errors.InvalidSetting`, one line
    per problem naming the setting, where it came from and what is accepted.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as e:
        raise InvalidSetting(explain(e, given)) from None


def _toml_path() -> Path:
    return Path(os.environ.get("TASTEGRAPH_CONFIG", "tastegraph.toml"))


def _toml_keys(path: Path) -> set[str]:
    """Dotted paths set in the file (flat legacy keys as their section's path)."""
    if not path.is_file():
        return set()
    try:
        import tomllib
    except ImportError:  # Python 3.10: pydantic-settings' own dependency
        import tomli as tomllib  # type: ignore[no-redef,unused-ignore]
    data = nest_legacy(tomllib.loads(path.read_text(encoding="utf-8")))
    keys: set[str] = set()
    for k, v in data.items():
        if isinstance(v, dict):
            keys.update(f"{k}.{sub}" for sub in v)
        else:
            keys.add(k)
    return keys


def setting_sources(**overrides: Any) -> dict[str, str]:
    """Where each setting's value comes from, by dotted path, in the order the chain is read:
    ``flag`` (an explicit override), ``env TASTEGRAPH_X``, ``toml PATH`` or ``default``.

    >>> setting_sources(port=9000)["api.port"]
    'flag'
    """
    flags: set[str] = set()
    for k, v in nest_legacy({k: v for k, v in overrides.items() if v is not None}).items():
        if isinstance(v, dict):
            flags.update(f"{k}.{sub}" for sub in v)
        else:
            flags.add(k)
    path = _toml_path()
    in_toml = _toml_keys(path)
    env = _environ()
    out: dict[str, str] = {}
    for name in setting_fields():
        old = legacy_env_var(name)
        if name in flags:
            out[name] = "flag"
        elif env_var(name) in env:
            out[name] = f"env {env_var(name)}"
        elif old is not None and old in env:
            out[name] = f"env {old}"
        elif name in in_toml:
            out[name] = f"toml {path}"
        else:
            out[name] = "default"
    return out


def accepted(field: FieldInfo) -> str:
    """What a setting accepts, in words: ``an integer >= 1 and <= 65535``, ``one of 'a', 'b'``."""
    args = [a for a in get_args(field.annotation) if a is not type(None)]
    if args and all(isinstance(a, str) for a in args):
        return "one of " + ", ".join(repr(a) for a in args)
    ann = args[0] if len(args) == 1 else field.annotation
    if get_origin(ann) is tuple:
        kind = f"a list of {len(get_args(ann))} numbers"
    elif isinstance(ann, type) and issubclass(ann, datetime):
        kind = "a time in ISO 8601 with a zone"
    else:
        words = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        kind = words.get(ann, "a path") if isinstance(ann, type) else str(ann)
    bounds = []
    for m in field.metadata:
        for attr, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                bounds.append(f"{word} {getattr(m, attr)}")
        if getattr(m, "multiple_of", None) is not None:
            bounds.append(f"a multiple of {m.multiple_of}")
    none = " (or empty)" if type(None) in get_args(field.annotation) else ""
    return kind + (" " + " and ".join(bounds) if bounds else "") + none


def explain(error: ValidationError, overrides: dict[str, Any] | None = None) -> str:
    """One line per problem of ``error``: the setting, its source and what it accepts."""
    fields = setting_fields()
    sources = setting_sources(**(overrides or {}))
    lines = []
    for problem in error.errors():
        loc = ".".join(str(p) for p in problem["loc"][:2])
        if problem["type"] == "extra_forbidden":
            section = loc.split(".")[0] if "." in loc else ""
            known = [p for p in fields if p.startswith(section + ".")] if section else list(fields)
            near = difflib.get_close_matches(loc, known, n=1, cutoff=0.75)
            hint = f"; did you mean {near[0]}?" if near else ""
            lines.append(f"unknown setting {loc} ({_unknown_source(loc)}){hint}")
            continue
        field = fields.get(loc)
        where = sources.get(loc, "default")
        what = accepted(field) if field is not None else problem["msg"]
        value = problem.get("input")
        lines.append(f"setting {loc} = {value!r} ({where}) is not accepted: expected {what}")
    return "\n".join(lines)


def _unknown_source(path: str) -> str:
    var = env_var(path)
    if var in _environ():
        return f"env {var}"
    if path in _toml_keys(_toml_path()):
        return f"toml {_toml_path()}"
    return "flag"
