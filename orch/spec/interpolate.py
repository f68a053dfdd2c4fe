"""Variable interpolation, as compose-spec 12-interpolation.md defines it.

`$VAR` and `${VAR}` take a variable's value; `${VAR:-d}` / `${VAR-d}` give a default when it is
unset or empty / unset; `${VAR:?e}` / `${VAR?e}` fail with `e` when it is unset or empty /
unset; `${VAR:+a}` / `${VAR+a}` give `a` when it is set and not empty / set. The word after the
operator may itself hold `${...}`, to any depth. `$$` is a literal `$`. A `$` that starts no
name stays as it is; a `${` that starts no valid expression is an error, as in compose-go.

Only values are interpolated, never keys, and each file before the files are merged.
"""

import re
from collections.abc import Callable, Mapping

from orch.spec.errors import Problems
from orch.spec.yamltree import Map, Seq

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")

Lookup = Callable[[str], str | None]


class InterpolationError(ValueError):
    pass


def substitute(text: str, lookup: Lookup, unset: set[str] | None = None) -> str:
    """`text` with every variable replaced. Names read while unset go into `unset`, so the
    caller can warn about them once (compose substitutes an empty string and warns)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char != "$" or i + 1 >= n:
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            value, i = _braced(text, i, lookup, unset)
            out.append(value)
        else:
            match = _NAME.match(text, i + 1)
            if match is None:
                out.append("$")
                i += 1
                continue
            out.append(_value(match.group(), lookup, unset))
            i = match.end()
    return "".join(out)


def _value(name: str, lookup: Lookup, unset: set[str] | None) -> str:
    value = lookup(name)
    if value is None:
        if unset is not None:
            unset.add(name)
        return ""
    return value


def _braced(text: str, start: int, lookup: Lookup, unset: set[str] | None) -> tuple[str, int]:
    """Evaluate the `${...}` that starts at `text[start]`; return its value and the index after it."""
    bad = InterpolationError(f"invalid interpolation format in {text!r}; write a literal $ as $$")
    match = _NAME.match(text, start + 2)
    if match is None:
        raise bad
    name, pos = match.group(), match.end()
    if pos < len(text) and text[pos] == "}":
        return _value(name, lookup, unset), pos + 1
    op = next((op for op in _OPERATORS if text.startswith(op, pos)), None)
    if op is None:
        raise bad
    end = _closing_brace(text, pos + len(op))
    if end < 0:
        raise bad
    word = text[pos + len(op) : end]
    value = lookup(name)
    empty = value is None or (op.startswith(":") and value == "")
    if op in (":-", "-"):
        result = substitute(word, lookup, unset) if empty else value
    elif op in (":?", "?"):
        if empty:
            reason = substitute(word, lookup, unset)
            raise InterpolationError(f"required variable {name} is missing a value" + (f": {reason}" if reason else ""))
        result = value
    else:
        result = "" if empty else substitute(word, lookup, unset)
    return result, end + 1


def _closing_brace(text: str, pos: int) -> int:
    """The index of the `}` that closes the expression. Every `{` opens a level, not only
    `${`, as compose-go counts them: `${X:-{"json":1}}` has the default `{"json":1}`."""
    depth = 0
    while pos < len(text):
        if text[pos] == "{":
            depth += 1
        elif text[pos] == "}":
            if depth == 0:
                return pos
            depth -= 1
        pos += 1
    return -1


def make_lookup(environ: Mapping[str, str]) -> Lookup:
    return environ.get


def interpolate_tree(tree, lookup: Lookup, problems: Problems, unset: set[str], path: tuple = ()) -> None:
    """Interpolate every string value of a Map/Seq tree in place; problems name file:line:col."""
    if isinstance(tree, Map):
        items = list(tree.items())
    elif isinstance(tree, Seq):
        items = list(enumerate(tree))
    else:
        return
    for key, value in items:
        if isinstance(value, str):
            try:
                tree[key] = substitute(value, lookup, unset)
            except InterpolationError as err:
                problems.add(tree.mark_of(key), path + (key,), str(err))
        else:
            interpolate_tree(value, lookup, problems, unset, path + (key,))
