"""Architecture keyword arguments, validated by pydantic models with messages that name the key.

Every architecture has a model: a registered builder's comes from its signature and declared ranges
(:func:`builder_kwargs_model`), timm models share :class:`medbench.models.timm_support.TimmKwargs`.
Validation is strict (``"8"`` and ``true`` are not integers, no value is coerced), refuses keys the
model does not declare, and :func:`kwargs_problems` turns pydantic's errors into one sentence per
problem: which ``architecture_kwargs`` key, what is wrong with it, and what is accepted.
"""

from __future__ import annotations

import functools
import inspect
from typing import Annotated, Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

__all__ = ["ArchitectureKwargs", "Range", "builder_kwargs_model", "kwargs_problems"]

Range = tuple[float, float]
WHERE = "architecture_kwargs"
_KINDS = {"int": int, "float": float, "bool": bool, "str": str}
_TYPE_WORDS = {"integer": "an integer (a number without quotes or decimals)", "number": "a number",
               "boolean": "true or false", "string": "a string", "array": "a list"}
_PLURALS = {"integer": "integers", "number": "numbers", "boolean": "booleans", "string": "strings"}
_RANGE_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}
_LIST_ERRORS = {"list_type", "too_short", "too_long"}


class ArchitectureKwargs(BaseModel):
    """Base of every architecture's kwargs model: strict types, finite numbers, no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def builder_kwargs_model(name: str, params: dict[str, inspect.Parameter],
                         ranges: dict[str, Range]) -> type[ArchitectureKwargs]:
    """The kwargs model of builder ``name``: one field per parameter, typed from its annotation or
    default (untyped: anything), bounded by ``ranges`` (inclusive), required without a default."""
    fields: dict[str, Any] = {}
    for key, param in params.items():
        kind: Any = _kind(param) or (float if key in ranges else Any)
        if key in ranges:
            low, high = ranges[key]
            kind = Annotated[kind, Field(ge=low, le=high)]
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[key] = (kind, default)
    return create_model(f"{name}_kwargs", __base__=ArchitectureKwargs, **fields)


def _kind(param: inspect.Parameter) -> type | None:
    ann = param.annotation
    kind = _KINDS.get(ann) if isinstance(ann, str) else ann if ann in _KINDS.values() else None
    if kind is None and param.default is not inspect.Parameter.empty and param.default is not None:
        kind = type(param.default) if type(param.default) in _KINDS.values() else None
    return kind


def kwargs_problems(model: type[BaseModel], kwargs: dict, *, unknown: Callable[[str], str],
                    range_note: str = "") -> list[str]:
    """Why ``kwargs`` do not validate against ``model``, one sentence each (in the order of the
    keys); empty when they do. ``unknown(key)`` words the refusal of a key the model does not
    declare; ``range_note`` follows a range ("of resnet8")."""
    try:
        model.model_validate(kwargs)
    except ValidationError as exc:
        order = {key: i for i, key in enumerate(kwargs)}

        def position(error: dict) -> int:
            return order.get(error["loc"][0], len(order)) if error["loc"] else len(order)

        errors = sorted(exc.errors(), key=position)
        return [_sentence(model, error, unknown, range_note) for error in errors]
    return []


def _sentence(model: type[BaseModel], error: dict, unknown: Callable[[str], str],
              range_note: str) -> str:
    loc, kind, value = error["loc"], error["type"], error.get("input")
    if not loc:  # a rule across keys (a model validator): its message is the sentence
        return error["msg"]
    key = str(loc[0])
    where = WHERE + "." + key + "".join(f"[{i}]" for i in loc[1:])
    if kind == "extra_forbidden":
        return unknown(key)
    if kind == "missing":
        return f"{where} is required (the builder has no default for it); add it"
    schema = _field_schema(model, loc)
    shown = f"{type(value).__name__} {str(value)[:40]!r}"
    if kind in _RANGE_ERRORS:
        return (f"{where} = {value} is outside the range [{schema.get('minimum', '-inf')}, "
                f"{schema.get('maximum', 'inf')}]{range_note}")
    if kind in _LIST_ERRORS:
        items = schema.get("items", {}).get("type", "")
        most = schema.get("maxItems", "any number of")
        return (f"{where} must be a list of {schema.get('minItems', 0)} to {most} "
                f"{_PLURALS.get(items, 'items')}, got {str(value)[:60]!r}")
    if kind == "literal_error":
        choices = ", ".join(map(repr, schema.get("enum", [])))
        return f"{where} must be one of {choices}, got {value!r}"
    if kind == "finite_number":
        return f"{where} must be a finite number, got {value!r}"
    if kind.endswith("_type"):
        fallback = kind.removesuffix("_type").replace("_", " ")
        words = _TYPE_WORDS.get(schema.get("type", ""), fallback)
        return f"{where} must be {words}, got {shown}"
    return f"{where}: {error['msg']} (got {shown})"


def _field_schema(model: type[BaseModel], loc: tuple) -> dict:
    """The JSON Schema of the field (or list item) at ``loc``: its type, bounds and choices."""
    schema = _schema(model).get("properties", {}).get(str(loc[0]), {})
    for _ in loc[1:]:
        schema = schema.get("items", {})
    return schema


@functools.lru_cache(maxsize=None)
def _schema(model: type[BaseModel]) -> dict:
    return model.model_json_schema()
