"""Typed dataclass configs loaded from YAML; unknown keys are errors, not surprises.

Every job config is a ``@dataclass`` whose fields have defaults and a one-line comment.
``load(Cls, path, overrides)`` reads the YAML file (and its ``base:`` file, whose keys it
overrides: a size variant lists only what differs), applies ``key=value`` overrides
(dotted keys reach nested dataclasses: ``optim.lr=0.1``) and checks every key, type and
value: a field's domain is in its annotation (``epochs: PosInt``, ``flip: Probability``,
``name: Literal["sgd", "rmsprop"]``), and a class may add a ``validate()`` method for
rules between its fields. Errors name the file, the dotted key and the value.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Iterable, Iterator, TypeVar

import yaml

__all__ = ["ConfigError", "from_dict", "load", "read_yaml", "to_dict", "parse_overrides", "Range",
           "dotted", "configs", "check_inputs", "replace_configs", "is_data_key", "is_location_key", "map_locations",
           "changed_keys",
           "PosInt", "Count", "PosFloat", "NonNegFloat", "Probability", "Fraction"]

T = TypeVar("T")


class ConfigError(ValueError):
    """An unknown key, a wrong type or an unreadable config file."""


@dataclass(frozen=True)
class Range:
    """The domain of a number field, as ``Annotated[int, Range(ge=1)]``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: float, where: str) -> None:
        ok = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
              and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        if not ok:
            raise ConfigError(f"{where}: {value!r} is out of range; must be {self}")

    def __str__(self) -> str:
        ops = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
        return " and ".join(f"{ops[k]} {getattr(self, k):g}" for k in ops if getattr(self, k) is not None)


PosInt = Annotated[int, Range(ge=1)]  # sizes, epochs, workers
Count = Annotated[int, Range(ge=0)]  # "0 = all / off / auto" counts
PosFloat = Annotated[float, Range(gt=0)]  # learning rates, epsilons
NonNegFloat = Annotated[float, Range(ge=0)]
Probability = Annotated[float, Range(ge=0, le=1)]
Fraction = Annotated[float, Range(ge=0, lt=1)]  # momentum, decay rates, dropout


class _Raw(str):
    """Override text as typed on the command line; parsed as YAML unless the field is a string."""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    if isinstance(value, _Raw):
        # A string field keeps the exact text (a run id like 123e45 must not become a float).
        parsed = yaml.safe_load(value)
        if typing.get_origin(tp) is typing.Literal and str(value) in typing.get_args(tp):
            value = str(value)  # `--set run.use_gpu=true` is the name "true", not a bool
        elif (tp is str or tp == (str | None)) and parsed is not None and not isinstance(parsed, str):
            value = str(value)
        else:
            value = parsed
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        value = _coerce(value, args[0], where)
        for rule in tp.__metadata__:
            if isinstance(rule, Range):
                rule.check(value, where)
        return value
    if origin is typing.Literal:
        if isinstance(value, bool) and str(value).lower() in args:
            value = str(value).lower()  # YAML reads `use_gpu: true` as a bool
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} fits none of {args}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys."""
    hints = typing.get_type_hints(cls, include_extras=True)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {unknown}; known: {sorted(names)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict):
            # A partial nested section overrides the field's own default, not the class defaults.
            v = _merge(_field_default(fields[k]), v)
        kwargs[k] = _coerce(v, hints[k], f"{where}.{k}" if where else k)
    try:
        obj = cls(**kwargs)
        if hasattr(obj, "validate"):
            obj.validate()
    except ConfigError as e:  # rules between fields name their keys relative to this class
        raise ConfigError(f"{where}.{e}" if where else str(e)) from None
    return obj


def _field_default(f: dataclasses.Field) -> dict:
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    elif f.default is not dataclasses.MISSING:
        value = f.default
    else:
        return {}
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else {}


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a dataclass config (for YAML, MLflow params)."""
    return dataclasses.asdict(cfg)


def parse_overrides(items: Iterable[str], raw: bool = False) -> dict:
    """``["a.b=1", "c=x"]`` -> nested dict with YAML-parsed values (``raw``: the typed text,
    resolved against the field types by :func:`load`)."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, text = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = _Raw(text) if raw else yaml.safe_load(text)
    return out


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


BASE_KEY = "base"  # a config file's parent, relative to its folder: its keys are merged under this file's


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A config file's mapping with its ``base:`` chain merged in (the file's own keys win;
    nested mappings merge key by key, lists and scalars replace). Errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}" + (f" (the base of {_seen[-1]})" if _seen else ""))
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(p)
        what = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{where}: not valid YAML ({what})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{p}: {BASE_KEY}: must name a config file, got {base!r}")
    parent = (p.parent / base).resolve()
    if parent in (*_seen, p.resolve()):
        raise ConfigError(f"{p}: {BASE_KEY}: {base} makes a cycle ({' -> '.join(str(q) for q in (*_seen, p))})")
    return _merge(read_yaml(parent, (*_seen, p.resolve())), data)


def load(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Config from a YAML file (its ``base:`` chain merged in; the defaults when ``path`` is
    None) plus overrides."""
    data = read_yaml(path) if path is not None else {}
    data = _merge(data, parse_overrides(overrides, raw=True))
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path or 'defaults'}: {e}") from None


# --------------------------------------------------------------------------- walks

def dotted(where: str, key: str) -> str:
    """``key`` under the dotted prefix ``where`` (the top level when empty)."""
    return f"{where}.{key}" if where else key


def configs(cfg: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, config) for ``cfg`` and every dataclass config nested in it, top down."""
    yield where, cfg
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            yield from configs(value, dotted(where, f.name))


def check_inputs(cfg: Any, where: str = "") -> None:
    """Each nested config's ``check_inputs(where)``: the cheap checks of the files, splits and
    folders it names (a listing, the first files), which a job's driver runs before any work
    starts. Errors name the dotted key. A class without the method names no inputs."""
    for key, c in configs(cfg, where):
        if hasattr(c, "check_inputs"):
            c.check_inputs(key)


def replace_configs(cfg: Any, fn: Callable[[Any], Any]) -> Any:
    """``cfg`` with each nested config for which ``fn`` returns a config (not None) replaced by it."""
    got = fn(cfg)
    if got is not None:
        return got
    changes = {f.name: replace_configs(getattr(cfg, f.name), fn) for f in dataclasses.fields(cfg)
               if dataclasses.is_dataclass(getattr(cfg, f.name))}
    return dataclasses.replace(cfg, **changes) if changes else cfg


LOCATION_KEYS = ("root", "data_root", "index", "init", "arch", "tracker", "supernet")  # may name a file or folder


def is_data_key(key: str) -> bool:
    """Keys that hold data locations: ``root``, ``data_root``, ``val_root``, ..."""
    return key == "root" or key.endswith("_root")


def is_location_key(key: str) -> bool:
    """Keys that may hold a file or folder: the data keys and :data:`LOCATION_KEYS`."""
    return key in LOCATION_KEYS or is_data_key(key)


def map_locations(node: Any, fix: Callable[[str], str], keys: Callable[[str], bool] = is_location_key) -> Any:
    """``node`` (a config as nested dicts and lists) with ``fix(value)`` in place of each
    relative local location: a non-empty string under a key ``keys`` accepts that is neither
    a URI nor an absolute path. The one walk by which jobs and drivers resolve paths."""
    if isinstance(node, list):
        return [map_locations(v, fix, keys) for v in node]
    if not isinstance(node, dict):
        return node
    return {k: fix(v) if keys(k) and isinstance(v, str) and v and "://" not in v and not Path(v).is_absolute()
            else map_locations(v, fix, keys) for k, v in node.items()}


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, new value) for each value of ``new`` that differs from ``old``'s; a
    list counts as one value (an override replaces lists whole)."""
    out = []
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(old.get(k), dict):
            out += changed_keys(old[k], v, f"{prefix}{k}.")
        elif v != old.get(k):
            out.append((f"{prefix}{k}", v))
    return out
