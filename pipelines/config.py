"""One way to turn plain mappings (YAML, ``key=value`` overrides, keyword dicts) into config dataclasses.

:func:`build` is used for every config of the toolkit — the method configs of the
pipelines (``MoQuadConfig``, ``ClipConfig``, ``AugmentConfig``...) and the training run's
``TrainConfig`` — so that all of them reject an unknown key with the list of valid ones,
and convert and check every value against the field's annotated type, naming the key:

* ``int`` / ``float`` take numbers, and strings that read as numbers (YAML reads ``1e-3``
  as a string, since its floats need a dot); an ``int`` field refuses ``2.5``, a ``float``
  field ``nan`` and ``inf``;
* ``bool`` takes booleans only; ``str`` takes strings only;
* ``Tuple[X, ...]`` and ``Tuple[X, Y]`` take lists or tuples (fixed tuples of that length);
* ``Optional[X]`` also takes ``None`` (``null`` in YAML);
* a nested config dataclass takes a mapping, merged over the field's *default* instance, so
  that a method's own defaults (MoQuad's speeds ``(1, 2, 4)``) survive a partial override.

Range checks (a probability in [0, 1], a positive frame count) stay in each dataclass's
``__post_init__``; what arrives there already has the right type. A check that raises
:class:`FieldError` is named by its full key (``pipeline_config.clip.augment.std``).

Every value an error line echoes goes through :func:`shown`, which cuts it to a readable
length however large it is; :func:`read_yaml` reads a config's YAML text, refusing a key
given twice in one mapping and aliases that expand beyond :data:`MAX_ALIAS_EXPANSION` values.
"""
from __future__ import annotations

import dataclasses
import math
import reprlib
import typing
from typing import Any, Mapping, Optional

import yaml

from .errors import MotionSSLError

_NONE = type(None)


class ConfigError(MotionSSLError, ValueError):
    """A config value or key that cannot be used; the message names the key."""


class FieldError(MotionSSLError, ValueError):
    """A range check of one field of a config dataclass (raised in ``__post_init__``); :func:`build` prefixes the
    field with its key path, so the message names the whole key."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 3, 60, 60
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 6


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, in time that does not grow with the value: what an error
    line echoes of a value (a list of a million items, a long string, a huge number)."""
    try:
        text = _SHOWN.repr(value)
    except ValueError:  # an integer beyond Python's limit for converting it to text
        text = f"<a number of {value.bit_length()} bits>" if isinstance(value, int) else f"<{type(value).__name__}>"
    return cut(text, limit)


def cut(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (its end replaced by ``...``): a user's text echoed in an error line."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- YAML ----------------------------------------------------------------------------------------------------------
MAX_ALIAS_EXPANSION = 10_000  # values that aliases (*name) may add to a config once expanded


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader; a mapping that gives a key twice is an error (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: merged keys may be given again
                    continue
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise ConfigError(f"{self.name}: key {shown(key)} at line {line} is given already at line "
                                          f"{seen[key]} of the same mapping; keep one")
                    seen[key] = line
                except TypeError:  # an unhashable key: PyYAML's own error follows
                    continue
        return super().construct_mapping(node, deep=deep)


def _check_aliases(node, name: str) -> None:
    """A :class:`ConfigError` if the aliases in ``node`` expand it by more than :data:`MAX_ALIAS_EXPANSION` nodes,
    counted on the composed nodes (each distinct node once), before any value is built."""
    sizes, active = {}, set()

    def size(n) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        if id(n) in active:
            raise ConfigError(f"{name}: an alias refers to the value that contains it (line {n.start_mark.line + 1})")
        active.add(id(n))
        children = n.value if isinstance(n, yaml.SequenceNode) else (
            [x for pair in n.value for x in pair] if isinstance(n, yaml.MappingNode) else [])
        total = 1 + sum(size(child) for child in children)
        active.discard(id(n))
        sizes[id(n)] = total
        return total

    if size(node) - len(sizes) > MAX_ALIAS_EXPANSION:
        raise ConfigError(f"{name}: its aliases (*name) expand to more than {MAX_ALIAS_EXPANSION} values; write the "
                          "values out, or use fewer aliases")


def read_yaml(text, name: str) -> Any:
    """The value of the YAML document ``text`` (a string or an open file); ``name`` (a file, an override) starts every
    error: invalid YAML (what and where), a key given twice in a mapping, aliases that expand too far."""
    loader = _ConfigLoader(text)
    loader.name = name
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(node, name)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: not valid YAML ({_yaml_problem(exc)})") from None
    except ConfigError:
        raise
    except ValueError as exc:  # a value YAML cannot build, e.g. an integer of more than 4300 digits
        raise ConfigError(f"{name}: {cut(str(exc))}") from None
    except RecursionError:
        raise ConfigError(f"{name}: values nested too deeply") from None
    finally:
        loader.dispose()


def _yaml_problem(exc: Exception) -> str:
    """A YAML error in one line: what and where (line and column, 1-based)."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{what} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else what


def build(cls, values: Optional[Mapping[str, Any]] = None, where: str = "", base: Any = None,
          origin: Optional[str] = None):
    """An instance of the config dataclass ``cls`` from ``values`` over ``base`` (default: the field defaults).

    ``where`` is the key path of ``cls`` inside a larger config (``"moquad"`` → errors name
    ``moquad.clip.frames``); ``origin`` says where the values came from (files, overrides)
    and is appended to every error.
    """
    try:
        return _build(cls, values, where, base)
    except ConfigError as exc:
        if origin:
            raise ConfigError(f"{exc} (from {origin})") from None
        raise


def _build(cls, values, where: str, base: Any):
    if isinstance(values, cls) and base is None:
        return values
    if values is not None and not isinstance(values, Mapping):
        raise ConfigError(f"{where or 'the config'} must be a mapping of keys to values, got {shown(values)}")
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown {where or 'config'} key(s) {shown(unknown)}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        default = getattr(base, name) if base is not None else _default(fields[name])
        kwargs[name] = coerce(value, hints[name], f"{where}.{name}" if where else name, default)
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except ConfigError:
        raise
    except FieldError as exc:  # a __post_init__ range check of one field: name its whole key
        raise ConfigError(f"{where}.{exc}" if where else str(exc)) from exc
    except (TypeError, ValueError) as exc:  # a __post_init__ range check: keep its text, name the config
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from exc


def coerce_kwargs(fn, values: Optional[Mapping[str, Any]], where: str) -> dict:
    """Keyword arguments for ``fn`` (a function, or a class: its ``__init__``'s) from a mapping, each converted to its
    parameter's annotated type.

    For the config entries that are passed on to a constructor as they are (``method``,
    ``backbone_kwargs``, ``loader``): an unknown name lists the valid ones, a value of the
    wrong type names its key (``method.temperature='5e-2'`` becomes 0.05).
    """
    import inspect

    values = dict(values or {})
    params = {name: p for name, p in inspect.signature(fn).parameters.items()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    unknown = sorted(set(values) - set(params))
    if unknown and not open_ended:
        raise ConfigError(f"unknown {where} key(s) {shown(unknown)}; valid keys: {sorted(params)}")
    try:
        hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)  # a class's: its attributes' types
    except (NameError, TypeError):  # annotations that cannot be evaluated: leave the values as they are
        hints = {}
    return {name: coerce(value, hints.get(name, Any), f"{where}.{name}") for name, value in values.items()}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def coerce(value: Any, hint: Any, key: str, default: Any = None) -> Any:
    """``value`` converted to the annotated type ``hint``; :class:`ConfigError` naming ``key`` otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin is typing.Union:
        if value is None and _NONE in args:
            return None
        options = [a for a in args if a is not _NONE]
        if len(options) == 1:
            return coerce(value, options[0], key, default)
        for option in options:
            try:
                return coerce(value, option, key, default)
            except ConfigError:
                continue
        raise ConfigError(f"{key}={shown(value)}: expected one of {[_name(o) for o in options]}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping of its options, got {shown(value)}")
        base = default if isinstance(default, hint) else None
        return _build(hint, value, key, base)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={shown(value)}: expected a list")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}={shown(list(value))}: expected {len(args)} values")
            items = [coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item = args[0] if args else Any
            items = [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {shown(value)}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={shown(value)}: expected true or false")
    if hint is int:
        number = _number(value, key)
        if isinstance(number, float):
            if not number.is_integer():
                raise ConfigError(f"{key}={shown(value)}: expected a whole number")
            number = int(number)
        return number
    if hint is float:
        number = float(_number(value, key))
        if not math.isfinite(number):  # nan and inf pass every range check written as a comparison
            raise ConfigError(f"{key}={shown(value)}: expected a finite number")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}={shown(value)}: expected a string")
    return value


def _number(value: Any, key: str):
    if isinstance(value, bool):
        raise ConfigError(f"{key}={shown(value)}: expected a number, got a boolean")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{key}={shown(value)}: expected a number")


def _name(hint) -> str:
    return getattr(hint, "__name__", str(hint))
