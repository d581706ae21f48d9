"""The lists of ``{name: options}`` items in a spec: a model's modules and data.features' steps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, GetJsonSchemaHandler, Tag, create_model
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from xsharp.algos.feature_step import Step
from xsharp.algos.features import STEPS
from xsharp.algos.modules import MODULES
from xsharp.algos.modules.base import Module

MAX_MODULES = 256  # modules in a model

Registry = Mapping[str, type[Module] | type[Step]]  # MODULES or STEPS: classes carrying Options and summary


def _item(kind: str) -> dict:
    """JSON Schema of a ``kind`` item in any of its forms (``{kind: options}``, ``{kind: null}``, ``kind``)."""
    return {"anyOf": [{"const": kind}, {"type": "object", "required": [kind]}]}


class _Shorthands:
    """Adds the short forms :func:`_normalise_layer` reads (``- softmax``, ``- softmax: null``) to
    the JSON Schema of a union, for the names whose options all have defaults."""

    def __init__(self, registry: Registry):
        self.kinds = [k for k, cls in registry.items() if not any(f.is_required() for f in cls.Options.model_fields.values())]

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        if self.kinds:
            schema["oneOf"] = [
                *schema["oneOf"],
                {"enum": self.kinds},
                {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": 1,
                    "properties": {k: {"type": "null"} for k in self.kinds},
                    "additionalProperties": False,
                },
            ]
        return schema


def _single_key_union(registry: Registry, suffix: str, noun: str) -> Any:  # a type form built at run time
    """A tagged union of ``{name: options}`` items, one member per entry of ``registry`` (whose
    classes carry ``Options`` and ``summary``); errors name the item and list the known names."""

    def kind_of(item: Any) -> str | None:
        if isinstance(item, BaseModel):  # serialising a validated spec
            return next(iter(type(item).model_fields))
        if isinstance(item, dict) and len(item) == 1:
            kind = next(iter(item))
            return kind if kind in registry else None
        return None

    members = []
    for kind, cls in registry.items():
        field: dict[str, Any] = {kind: (cls.Options, ...)}  # field names known only at run time
        item = create_model(
            f"{cls.__name__}{suffix}",
            __config__=ConfigDict(extra="forbid", strict=True, title=f"{kind} {noun}"),
            __doc__=cls.summary,
            **field,
        )
        members.append(Annotated[item, Tag(kind)])
    return Annotated[
        Union[tuple(members)],  # noqa: UP007 - members known only at run time: X | Y cannot spell it
        Discriminator(
            kind_of,
            custom_error_type=noun,
            custom_error_message=f"must be one {noun} as {{name: options}}, name one of {', '.join(registry)}",
        ),
        _Shorthands(registry),
    ]


ModuleLayer = _single_key_union(MODULES, "Layer", "module")
FeatureStep = _single_key_union(STEPS, "Step", "step")


def _normalise_layer(item: Any) -> Any:
    """``- softmax`` and ``- softmax: null`` both mean ``- softmax: {}``."""
    if isinstance(item, str):
        return {item: {}}
    if isinstance(item, dict) and len(item) == 1:
        ((kind, opts),) = item.items()
        if opts is None:
            return {kind: {}}
    return item


def layer_kind(layer: BaseModel) -> str:
    return next(iter(type(layer).model_fields))


def layer_dict(layer: BaseModel) -> dict[str, dict]:
    kind = layer_kind(layer)
    return {kind: getattr(layer, kind).model_dump(exclude_none=True)}
