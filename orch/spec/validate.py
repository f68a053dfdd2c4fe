"""pydantic's validation errors, told as stack-file error lines.

pydantic reports a location as a tuple of keys and indexes; we walk the raw tree along it to
find the line and column (the deepest value the tree knows: a short-syntax string that the
model expanded has no deeper position), and the model class along it to suggest the key the
user meant.
"""

import types
import typing
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError

from orch.spec.errors import Mark, Problems, format_path, suggest
from orch.spec.syntax import type_name
from orch.spec.yamltree import Map, Seq


def locate(tree, loc: Iterable, *, key: bool = False) -> Mark | None:
    """The mark of the value at `loc` (of the key itself with key=True), or of its deepest
    ancestor that the tree knows."""
    mark = getattr(tree, "mark", None)
    node = tree
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(node, Map) and isinstance(part, str) and part in node:
            last = i == len(parts) - 1
            mark = (node.key_marks.get(part) if key and last else node.marks.get(part)) or mark
            node = node[part]
        elif isinstance(node, Seq) and isinstance(part, int) and 0 <= part < len(node):
            mark = node.marks[part] or mark
            node = node[part]
        elif isinstance(node, Seq) and isinstance(part, str) and part in node:
            # A name that the model keys by but the file lists (`depends_on: [db]`).
            index = node.index(part)
            mark = node.marks[index] or mark
            node = node[index]
        else:
            break
    return mark


def _unwrap(annotation):
    """Strip Annotated and Optional from a type annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def model_at(root: type[BaseModel], loc: Iterable):
    """The model class that holds the value at `loc`, or None when the path leaves the models."""
    current = root
    for part in loc:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif origin in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _describe(error: dict) -> str:
    kind, value = error["type"], error.get("input")
    shown = repr(value) if isinstance(value, (str, int, float, bool)) or value is None else type_name(value)
    if kind == "missing":
        return f"missing required key '{error['loc'][-1]}'"
    if kind in ("string_type", "str_type"):
        return f"expected a string, got {type_name(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, got {shown}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {shown}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {shown}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {type_name(value)}"
    if kind in ("list_type", "tuple_type"):
        return f"expected a list, got {type_name(value)}"
    if kind == "literal_error":
        return f"invalid value {shown}; expected {error['ctx']['expected']}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = next(iter(error.get("ctx", {}).values()), "?")
        word = {"greater_than_equal": "at least", "less_than_equal": "at most", "greater_than": "more than", "less_than": "less than"}
        return f"invalid value {shown}; it must be {word[kind]} {bound}"
    if kind == "value_error":
        return str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    message = error["msg"]
    return message[:1].lower() + message[1:]


def report_validation(err: ValidationError, tree, root: type[BaseModel], problems: Problems, prefix: tuple = ()) -> None:
    """Every error of `err` as one line in `problems`."""
    for error in err.errors(include_url=False):
        loc = prefix + tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            parent, name = loc[:-1], str(loc[-1])
            model = model_at(root, loc[len(prefix) : -1])
            hint = suggest(name, [f for f in model.model_fields if f != "extensions"]) if model else ""
            where = format_path(parent) or "the top level"
            problems.add(locate(tree, loc, key=True), loc, f"unknown key '{name}' in {where}{hint}")
            continue
        problems.add(locate(tree, loc), loc, _describe(error))
