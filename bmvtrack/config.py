"""Typed configuration: YAML files read into dataclasses, strictly.

Why strict: a misspelt key in a research config silently falls back to a default and wastes a
run. Every unknown key and every wrong type is an error that names the key and the file.

Ranges are declared on the field, where the meaning of the number is written down, and checked by
``from_dict`` (so by every ``load_config``) and by ``validate`` (for configs built in Python)::

    n_envs: int = field(default=2, metadata={"ge": 1})          # a count: at least 1
    learning_rate: float = field(default=3e-4, metadata={"gt": 0.0})
    keep: float = ranged(0.5, gt=0.0, le=1.0)                   # the same, shorter: a fraction in (0, 1]

Bounds: ``ge`` (>=), ``gt`` (>), ``le`` (<=), ``lt`` (<). A bounded value must be a finite number;
``None`` (for an ``X | None`` field) is always allowed; for a list every item is checked.

Overrides (``--set key=value``) are YAML only where YAML means something: a value for a string or
path field is taken as written (``run #1``, ``yes``, ``007`` stay strings), so a folder name can
never turn into a comment, a boolean or a number.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import operator
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any, Callable, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the source."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# --------------------------------------------------------------------------------- ranges

_BOUNDS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "ge": (operator.ge, ">="), "gt": (operator.gt, ">"), "le": (operator.le, "<="), "lt": (operator.lt, "<"),
}


def ranged(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
           ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
           **field_kwargs: Any) -> Any:
    """``dataclasses.field`` with range metadata: ``x: int = ranged(2, ge=1)`` (see the module docstring)."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    metadata = {**dict(field_kwargs.pop("metadata", None) or {}), **bounds}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata, **field_kwargs)


def field_bounds(f: dataclasses.Field) -> dict[str, float]:
    """The range a field declares in its metadata (``{}`` when none); a malformed bound is a bug, said at once."""
    bounds = {k: f.metadata[k] for k in _BOUNDS if k in f.metadata}
    for k, v in bounds.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"field '{f.name}': range bound {k}={v!r} is not a number")
    return bounds


def describe_range(bounds: Mapping[str, float]) -> str:
    """``>= 1``, ``> 0``, ``in (0, 1]``: the range as a user reads it."""
    low = [(k, v) for k, v in bounds.items() if k in ("ge", "gt")]
    high = [(k, v) for k, v in bounds.items() if k in ("le", "lt")]
    if len(low) == 1 and len(high) == 1:
        (lk, lv), (hk, hv) = low[0], high[0]
        return f"in {'[' if lk == 'ge' else '('}{lv}, {hv}{']' if hk == 'le' else ')'}"
    return " and ".join(f"{_BOUNDS[k][1]} {v}" for k, v in bounds.items())


def check_range(value: Any, bounds: Mapping[str, float], key: str, source: str) -> None:
    """ConfigError naming ``key``, the range, ``value`` and ``source`` unless ``value`` lies in ``bounds``."""
    if value is None or not bounds:
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_range(item, bounds, f"{key}[{i}]", source)
        return
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{source}: key '{key}' expects a number {describe_range(bounds)}, got {shown}")
    finite = isinstance(value, numbers.Integral) or math.isfinite(value)  # a 400-digit int is finite
    if not finite or not all(_BOUNDS[k][0](value, b) for k, b in bounds.items()):
        raise ConfigError(f"{source}: key '{key}' must be {describe_range(bounds)}, got {shown}")


def validate(cfg: T, source: str | None = None, prefix: str = "") -> T:
    """Check the declared ranges of a config built in Python (nested sections and lists included).

    ``from_dict`` checks the same ranges on everything it reads; call this (e.g. from
    ``__post_init__``) where a config is also built or changed in code. Returns ``cfg``.
    """
    source = source or type(cfg).__name__
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        value = getattr(cfg, f.name, None)
        key = prefix + f.name
        check_range(value, field_bounds(f), key, source)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, source, f"{key}.")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item) and not isinstance(item, type):
                    validate(item, source, f"{key}[{i}].")
    return cfg


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert only the lossless int -> float."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{source}: key '{key}' expects {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{source}: key '{key}' must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' expects a mapping, got {value!r}")
        return from_dict(tp, value, source=source, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: key '{key}' expects a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{source}: key '{key}' expects {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' expects a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads '5e-4' (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: key '{key}' expects a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: key '{key}' expects an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: key '{key}' expects true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: key '{key}' expects a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{source}: key '{key}' expects a path, got {value!r}")
        return Path(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], source: str = "<dict>", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown or missing keys, wrong types and values out of
    their declared range (``ranged`` / field metadata) raise ConfigError naming the key and ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at '{prefix or '<top>'}', got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {[prefix + k for k in unknown]}; "
            f"valid keys: {sorted(prefix + k for k in fields)}"
        )
    missing = sorted(name for name, f in fields.items() if name not in data
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ConfigError(f"{source}: missing key(s) {[prefix + k for k in missing]}")
    kwargs = {name: _coerce(value, hints[name], prefix + name, source) for name, value in data.items()}
    for name, value in kwargs.items():
        check_range(value, field_bounds(fields[name]), prefix + name, source)
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a check of the class's own (__post_init__): add where the values came from
        raise ConfigError(str(exc) if str(exc).startswith(source) else f"{source}: {exc}") from None
    except ValueError as exc:
        where = prefix.rstrip(".") or cls.__name__
        raise ConfigError(f"{source}: '{where}': {exc}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    loaded = loaded or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
    return loaded


Override = Union[str, tuple[str, Any]]
"""One override: ``"key.sub=value"`` (text, as typed after ``--set``) or ``("key.sub", value)``
(a value already typed, e.g. from an argparse flag: stored as it is, never parsed)."""

_NULLS = ("", "~", "null", "Null", "NULL")
_INT = re.compile(r"[+-]?\d+(?:_\d+)*")


def _is_stringish(tp: Any) -> bool:
    """A string or path field (or a Literal of strings), optionally ``| None``."""
    if tp in (str, Path, PurePath):
        return True
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return bool(args) and all(_is_stringish(a) for a in args)
    return False


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _section(tp: Any) -> Any:
    """The dataclass a (possibly ``| None``) annotation names, else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    dcs = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)] if _optional(tp) else []
    return dcs[0] if len(dcs) == 1 else None


def field_type(cls: Any, key: str) -> Any:
    """The annotation of dotted ``key`` in dataclass ``cls`` (None when the path does not name a field)."""
    tp: Any = cls
    for part in key.split("."):
        section = _section(tp)
        if section is None:
            return None
        hints = typing.get_type_hints(section)
        if part not in hints:
            return None
        tp = hints[part]
    return tp


def parse_override_value(raw: str, tp: Any = None) -> Any:
    """The value of ``key=raw`` for a field annotated ``tp``: YAML only where the field is not text.

    String and path fields keep ``raw`` as written (``#``, ``: ``, ``*``, ``&``, ``!``, ``yes``,
    ``007`` included); a quoted ``raw`` is unquoted (as YAML reads it), and for an ``X | None``
    field ``null`` / ``~`` / nothing means None. Integer fields read decimal digits as decimal
    (YAML 1.1 would read ``010`` as octal 8). Other fields are YAML. With no type known (``tp``
    None), YAML decides, except that text stays as written: a YAML string result is replaced by
    ``raw`` itself (so ``run #1`` does not lose ``#1`` to a comment), and ``raw`` starting with an
    anchor, alias or tag (``&``, ``*``, ``!``) or that is not YAML at all is kept as text.
    """
    text = raw.strip()
    quoted = text[:1] in ("'", '"')
    if tp is not None and _is_stringish(tp):
        if quoted:
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = None
            if isinstance(value, str):
                return value
        if _optional(tp) and text in _NULLS:
            return None
        return raw
    ints = tp is int or (typing.get_origin(tp) in (typing.Union, types.UnionType) and int in typing.get_args(tp))
    if ints and _INT.fullmatch(text):
        return int(text)
    if tp is None and text[:1] in ("&", "*", "!"):
        return raw
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        if tp is None:
            return raw
        raise ConfigError(f"override value {raw!r}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if tp is None and isinstance(value, str) and not quoted:
        return raw
    return value


def apply_overrides(data: dict[str, Any], overrides: Iterable[Override] | Mapping[str, Any],
                    cls: Any = None) -> None:
    """Apply overrides to a config mapping in place.

    ``"key.sub=value"`` texts are parsed by ``parse_override_value`` against the field's type in
    dataclass ``cls`` (plain YAML when ``cls`` is None or the key is unknown; ``from_dict`` then
    rejects an unknown key). ``("key.sub", value)`` pairs, or a mapping, are typed values (from
    flags) and are stored as they are, so a path given to a flag is never parsed at all.
    """
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    for item in items:
        if isinstance(item, tuple):
            key, value = item
            if isinstance(value, PurePath):
                value = str(value)
            shown = f"{key}={value!r}"
        else:
            if "=" not in item:
                raise ConfigError(f"override '{item}': expected key=value")
            key, raw = item.split("=", 1)
            key = key.strip()
            value = parse_override_value(raw, field_type(cls, key) if cls is not None else None)
            shown = item
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{shown}': '{part}' is not a section")
        node[parts[-1]] = value


def load_config(cls: type[T], path: str | Path | None = None,
                overrides: Iterable[Override] | Mapping[str, Any] | None = None,
                adjust: Callable[[dict[str, Any]], None] | None = None) -> T:
    """Read ``path`` (YAML) into ``cls``, then apply overrides (``key.sub=value`` texts or typed pairs).

    Sections a file leaves out keep *this* config's defaults (``to_dict(cls())``), not the
    nested class's own. ``adjust`` may complete the merged mapping before it is checked (e.g.
    give list entries defaults of their own).
    """
    data: dict[str, Any] = to_dict(cls())
    source = "<defaults>"
    if path is not None:
        source = str(path)
        merge_into(data, read_yaml(path))
    if overrides:
        apply_overrides(data, overrides, cls)
        source = f"{source} + overrides"
    if adjust is not None:
        adjust(data)
    return from_dict(cls, data, source=source)


def merge_into(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively overlay ``update`` on ``base`` (mappings merge; everything else replaces)."""
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge_into(base[k], v)
        else:
            base[k] = v
    return base


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML-serialisable dict of a config dataclass (paths as strings)."""

    def conv(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return {k: conv(v) for k, v in dataclasses.asdict(cfg).items()}


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config next to a run's outputs (atomically)."""
    from bmvtrack.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))
