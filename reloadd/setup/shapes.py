"""Raw JSON-like values into dataclasses, by the dataclasses' type hints.

A config that is right, the usual case, needs no more than one walk over its values: each has
exactly the type its field declares, so it is taken as it is. Anything that walk cannot vouch for
(a ``"100"`` where a number is expected, a missing key, a value a check refuses) goes to pydantic,
imported only then, which coerces what it may and words the error. Both ways run the same checks
in the same order (``before`` on the raw value, ``after`` on the typed one), so they agree: the
tests compare them on a table of configs. Importing pydantic and building its models would cost
every start about as much as node's own start-up.

Field metadata: ``alias`` (the key in the file when it differs from the field's name) and
``min_length`` (a list or string that must not be shorter).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, Callable, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

ALIAS = "alias"
MIN_LENGTH = "min_length"

Check = Callable[[Any], Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Checks:
    """What one dataclass's fields go through besides their types (one check per field and stage).

    ``open``: unknown keys are ignored and a field is found by its name as well as its alias (the
    top level of a config, whose other keys belong to nodemon); else an unknown key is an error.
    """

    before: Mapping[str, Check] = field(default_factory=dict)
    after: Mapping[str, Check] = field(default_factory=dict)
    open: bool = False


Catalogue = Mapping[type, Checks]
NO_CHECKS = Checks()


class Invalid(Exception):
    """The value is not a ``cls``: ``errors`` are pydantic's, the first one the most useful."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0].get("msg", "invalid value") if errors else "invalid value")
        self.errors = errors


class Unsure(Exception):
    """The quick walk cannot vouch for a value: pydantic decides."""


def load(cls: type[T], raw: Mapping[str, Any], checks: Catalogue) -> T:
    """``raw`` as a ``cls``, or Invalid."""
    try:
        return walk(cls, raw, checks)
    except (Unsure, ValueError):
        return through_pydantic(cls, raw, checks)


def walk(cls: type[T], raw: Mapping[str, Any], checks: Catalogue) -> T:
    """The quick way: ``raw`` as a ``cls`` when every value has exactly its field's type and passes
    its checks; Unsure (or a check's ValueError) for anything else."""
    return _object(cls, raw, checks)


def dump(value: Any, by_alias: bool = False) -> Any:
    """Dataclasses (nested, in lists and dicts) as plain dicts, keyed by field name or by alias."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            (item.metadata.get(ALIAS, item.name) if by_alias else item.name): dump(getattr(value, item.name), by_alias)
            for item in dataclasses.fields(value)
        }
    if isinstance(value, list):
        return [dump(item, by_alias) for item in value]
    if isinstance(value, dict):
        return {key: dump(item, by_alias) for key, item in value.items()}
    return value


def keys(cls: type) -> frozenset[str]:
    """The keys a file may use for ``cls``'s fields: the aliases, and the names that have none."""
    return frozenset(item.metadata.get(ALIAS, item.name) for item in dataclasses.fields(cls))


# -- the quick walk --------------------------------------------------------------------------------
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _required(item: dataclasses.Field[Any]) -> bool:
    return item.default is MISSING and item.default_factory is MISSING


def _object(cls: type[T], raw: Any, checks: Catalogue) -> T:
    if type(raw) is not dict:
        raise Unsure
    spec = checks.get(cls, NO_CHECKS)
    hints = _hints(cls)
    values: dict[str, Any] = {}
    found = 0
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = item.metadata.get(ALIAS, item.name)
        spellings = [name for name in {key, item.name} if name in raw and (name == key or spec.open)]
        if len(spellings) > 1:
            raise Unsure  # both the alias and the name: let pydantic choose
        if not spellings:
            if _required(item):
                raise Unsure
            continue
        found += 1
        values[item.name] = _field(item, hints[item.name], raw[spellings[0]], spec, checks)
    if found != len(raw) and not spec.open:
        raise Unsure  # a key the class does not have
    return cls(**values)


def _field(item: dataclasses.Field[Any], hint: Any, value: Any, spec: Checks, checks: Catalogue) -> Any:
    before, after = spec.before.get(item.name), spec.after.get(item.name)
    if before is not None:
        value = before(value)
    value = _typed(hint, value, checks)
    least = item.metadata.get(MIN_LENGTH)
    if least is not None and value is not None and len(value) < least:
        raise Unsure
    return after(value) if after is not None else value


def _typed(hint: Any, value: Any, checks: Catalogue) -> Any:
    """``value`` if it is exactly of type ``hint`` (a float field takes an int, as JSON means it)."""
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return _object(hint, value, checks)  # type: ignore[arg-type]
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union:  # the first exact match, as pydantic's smart unions choose
        for arg in args:
            try:
                return _typed(arg, value, checks)
            except Unsure:
                continue
        raise Unsure
    if origin is Literal:
        if any(type(value) is type(choice) and value == choice for choice in args):
            return value
        raise Unsure
    if origin is list and type(value) is list:
        return [_typed(args[0], item, checks) for item in value]
    if origin is dict and type(value) is dict:
        return {_typed(args[0], key, checks): _typed(args[1], item, checks) for key, item in value.items()}
    if hint is float and type(value) in (int, float):
        return float(value)
    if hint in (bool, int, str, type(None)) and type(value) is hint:
        return value
    raise Unsure


# -- pydantic, for everything else ----------------------------------------------------------------
_MODELS: dict[type, Any] = {}  # dataclass -> its pydantic model
_CLASSES: dict[Any, type] = {}  # and back


def through_pydantic(cls: type[T], raw: Mapping[str, Any], checks: Catalogue) -> T:
    """The thorough way: pydantic coerces what it may (``"100"`` for 100) and words the errors."""
    from pydantic import ValidationError

    try:
        model = _model(cls, checks).model_validate(raw)
    except ValidationError as exc:
        raise Invalid([dict(error) for error in exc.errors()]) from None
    return _plain(model)  # type: ignore[no-any-return]


def _model(cls: type, checks: Catalogue) -> Any:
    """The pydantic model with ``cls``'s fields, defaults, aliases, constraints and checks."""
    if cls in _MODELS:
        return _MODELS[cls]
    from pydantic import ConfigDict, Field, create_model, field_validator

    spec = checks.get(cls, NO_CHECKS)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        options = {name: item.metadata[name] for name in (ALIAS, MIN_LENGTH) if name in item.metadata}
        if item.default is not MISSING:
            options["default"] = item.default
        elif item.default_factory is not MISSING:
            options["default_factory"] = item.default_factory
        fields[item.name] = (_swapped(_hints(cls)[item.name], checks), Field(**options))
    validators = {
        f"check_{mode}_{name}": field_validator(name, mode=mode)(check)  # type: ignore[call-overload]
        for mode, table in (("before", spec.before), ("after", spec.after))
        for name, check in table.items()
    }
    if spec.open:
        config = ConfigDict(populate_by_name=True, extra="ignore", validate_default=False)
    else:
        config = ConfigDict(extra="forbid")
    model = create_model(cls.__name__, __config__=config, __validators__=validators, **fields)
    _MODELS[cls], _CLASSES[model] = model, cls
    return model


def _swapped(hint: Any, checks: Catalogue) -> Any:
    """``hint`` with every dataclass in it replaced by its pydantic model."""
    if dataclasses.is_dataclass(hint):
        return _model(hint, checks)  # type: ignore[arg-type]
    origin, args = get_origin(hint), get_args(hint)
    if not args or origin is Literal:
        return hint
    swapped = tuple(_swapped(arg, checks) for arg in args)
    return Union[swapped] if origin is Union else origin[swapped]


def _plain(value: Any) -> Any:
    """A validated model (nested, in lists and dicts) as the dataclasses it stands for."""
    cls = _CLASSES.get(type(value))
    if cls is not None:
        return cls(**{item.name: _plain(getattr(value, item.name)) for item in dataclasses.fields(cls)})
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
