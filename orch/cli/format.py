"""`--format` templates: the subset of Go's text/template that docker users type.

Supported: text with `{{ ... }}` actions (and `{{-`/`-}}` trimming), fields `.A.B` on dicts
and objects, `.` itself, string and number literals, pipelines with `|`, parentheses,
`{{if}}`/`{{else}}`/`{{end}}`, `{{range}}` (dot becomes each element), `{{with}}`, and the
functions docker's CLI registers or Go builds in: json, join, split, lower, upper, title,
truncate, pad, index, len, printf, print, println, eq, ne, lt, le, gt, ge, not, and, or.

Values print as Go's `%v` does: lists as `[a b]`, dicts as `map[k:v]`, None as `<nil>`,
booleans as true/false. `json` prints compact JSON without HTML escaping, as docker's does.
A `table` prefix prints a header row (the caller names each field's header) and aligns
columns as docker's tabwriter does (minimum width 10, padding 3); `\\t` and `\\n` typed on a
command line become a tab and a newline, as in docker.

Pure and lean: the CLI imports it only when `--format` or a table is printed.
"""

import json
import re

from orch.errors import InvalidArgument

TABLE = "table"
_ACTION = re.compile(r"{{(-\s)?(.*?)(\s-)?}}", re.S)
_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(`[^`]*`)|(\()|(\))|(\|)|(-?\d+(?:\.\d+)?)|(\.[\w.]*|\$[\w.]*)|([A-Za-z_]\w*))')


class TemplateError(InvalidArgument):
    pass


# -- printing ------------------------------------------------------------------------------


def show(value) -> str:
    """Go's %v for JSON-like values."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{show(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def to_json(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _json_default(value):
    if hasattr(value, "to_json"):
        return value.to_json()
    if hasattr(value, "__dict__"):
        return vars(value)
    raise TypeError(f"cannot print {type(value).__name__} as JSON")


class GoStruct(dict):
    """A JSON object whose fields a template may also name as the Go struct does, where Go's
    name differs from the JSON key only in case (`.APIVersion` for "ApiVersion", `.ID` for
    "Id"): docker's templates run on Go structs, its JSON has the tags' names."""

    def __missing__(self, key):
        for k in self:
            if isinstance(k, str) and k.lower() == str(key).lower():
                return dict.__getitem__(self, k)
        raise KeyError(key)


def _truthy(value) -> bool:
    return bool(value) and value != "<no value>"


def _cmp(op):
    def f(a, b, *more):
        if op == "eq" and more:
            return a == b or any(a == m for m in more)
        return {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]

    return f


def _index(value, *keys):
    for k in keys:
        try:
            value = value[k]
        except (KeyError, IndexError, TypeError):
            if isinstance(value, dict):
                return None
            raise TemplateError(f"template: index of {show(k)} in {show(value)} is out of range") from None
    return value


def _printf(fmt, *args):
    # Go verbs that mean "the value": %v %s %d; %q quotes.
    args = list(args)

    def repl(m):
        verb = m.group(1)
        if verb == "%":
            return "%"
        v = args.pop(0) if args else None
        return json.dumps(show(v)) if verb == "q" else show(v)

    return re.sub(r"%([vsdqt%])", repl, fmt)


FUNCS = {
    "json": to_json,
    "join": lambda items, sep: sep.join(show(i) for i in (items or [])),
    "split": lambda s, sep: s.split(sep),
    "lower": lambda s: show(s).lower(),
    "upper": lambda s: show(s).upper(),
    "title": lambda s: show(s).title(),
    "truncate": lambda s, n: show(s)[: int(n)],
    "pad": lambda s, left, right: " " * int(left) + show(s) + " " * int(right),
    "index": _index,
    "len": lambda v: len(v or ()),
    "printf": _printf,
    "print": lambda *a: "".join(show(x) for x in a),
    "println": lambda *a: " ".join(show(x) for x in a) + "\n",
    "not": lambda v: not _truthy(v),
    "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truthy(x)), a[-1]),
    **{op: _cmp(op) for op in ("eq", "ne", "lt", "le", "gt", "ge")},
}


# -- parsing -------------------------------------------------------------------------------


def _tokens(src: str, template: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(src):
        if src[pos:].strip() == "":
            break
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"template {template!r}: cannot parse {src[pos:].strip()!r}")
        kinds = ("str", "raw", "(", ")", "|", "num", "field", "ident")
        for kind, text in zip(kinds, m.groups()):
            if text is not None:
                out.append((kind, text))
        pos = m.end()
    return out


def _pipeline(tokens, template):
    """Parse tokens into a list of commands; a command is a list of operands."""
    commands, current, i = [], [], 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "|":
            if not current:
                raise TemplateError(f"template {template!r}: missing command before '|'")
            commands.append(current)
            current = []
        elif kind == "(":
            depth, j = 1, i + 1
            while j < len(tokens) and depth:
                depth += {"(": 1, ")": -1}.get(tokens[j][0], 0)
                j += 1
            if depth:
                raise TemplateError(f"template {template!r}: unclosed '('")
            current.append(("sub", _pipeline(tokens[i + 1 : j - 1], template)))
            i = j
            continue
        elif kind == ")":
            raise TemplateError(f"template {template!r}: unexpected ')'")
        else:
            current.append((kind, text))
        i += 1
    if not current:
        raise TemplateError(f"template {template!r}: empty command")
    commands.append(current)
    return commands


def parse(template: str):
    """The template as a tree: a list of str (text) and tuples (kind, pipeline, body, else)."""
    root: list = []
    stack = [(root, None)]
    pos = 0
    text_trim = False
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        if text_trim:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        if text:
            stack[-1][0].append(text)
        text_trim = bool(m.group(3))
        pos = m.end()
        body = m.group(2).strip()
        if body.startswith("/*"):
            continue
        word = body.split(None, 1)[0] if body else ""
        rest = body[len(word) :].strip()
        if word in ("if", "range", "with"):
            node = [word, _pipeline(_tokens(rest, template), template), [], None]
            stack[-1][0].append(node)
            stack.append((node[2], node))
        elif word == "else":
            if len(stack) == 1:
                raise TemplateError(f"template {template!r}: 'else' without 'if' or 'range'")
            node = stack[-1][1]
            node[3] = []
            stack[-1] = (node[3], node)
        elif word == "end":
            if len(stack) == 1:
                raise TemplateError(f"template {template!r}: 'end' without 'if', 'range' or 'with'")
            stack.pop()
        else:
            stack[-1][0].append(["action", _pipeline(_tokens(body, template), template), None, None])
    if len(stack) != 1:
        raise TemplateError(f"template {template!r}: missing '{{{{end}}}}'")
    tail = template[pos:]
    if text_trim:
        tail = tail.lstrip()
    if tail:
        root.append(tail)
    return root


# -- evaluating ----------------------------------------------------------------------------


def _field(value, path: str, template: str):
    for name in [p for p in path.split(".") if p]:
        if isinstance(value, dict):
            try:
                value = value[name]
            except KeyError:
                return "<no value>"
        elif value is None or value == "<no value>":
            return "<no value>"
        elif hasattr(value, name):
            value = getattr(value, name)
        else:
            raise TemplateError(f"template {template!r}: can't evaluate field {name} in type {type(value).__name__}")
    return value


def _operand(op, dot, template):
    kind, text = op
    if kind == "field":
        return _field(dot, text[1:], template)
    if kind == "str":
        return json.loads(text)
    if kind == "raw":
        return text[1:-1]
    if kind == "num":
        return float(text) if "." in text else int(text)
    if kind == "sub":
        return _run(text, dot, template)
    if kind == "ident":
        if text in ("true", "false"):
            return text == "true"
        if text == "nil":
            return None
        if text in FUNCS:
            return _call(text, [], template)
    raise TemplateError(f"template {template!r}: function {text!r} not defined")


def _call(name, args, template):
    try:
        return FUNCS[name](*args)
    except TypeError as err:
        raise TemplateError(f"template {template!r}: wrong arguments for {name}: {err}") from None


def _run(pipeline, dot, template):
    value, have = None, False
    for command in pipeline:
        head_kind, head = command[0]
        if head_kind == "ident" and head in FUNCS:
            args = [_operand(op, dot, template) for op in command[1:]]
            if have:
                args.append(value)
            value = _call(head, args, template)
        else:
            if len(command) > 1 or have:
                raise TemplateError(f"template {template!r}: {head!r} is not a function")
            value = _operand(command[0], dot, template)
        have = True
    return value


def _exec(nodes, dot, out: list, template: str):
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
            continue
        kind, pipeline, body, other = node
        value = _run(pipeline, dot, template)
        if kind == "action":
            out.append(show(value))
        elif kind == "if":
            _exec(body if _truthy(value) else (other or []), dot, out, template)
        elif kind == "with":
            if _truthy(value):
                _exec(body, value, out, template)
            elif other:
                _exec(other, dot, out, template)
        elif kind == "range":
            items = list(value.values()) if isinstance(value, dict) else list(value or [])
            if not items and other:
                _exec(other, dot, out, template)
            for item in items:
                _exec(body, item, out, template)


def render(template: str, value) -> str:
    """Render one value through a template."""
    out: list[str] = []
    _exec(parse(template), value, out, template)
    return "".join(out)


# -- tables --------------------------------------------------------------------------------


def unescape(fmt: str) -> str:
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


class _Headers(dict):
    def __missing__(self, key):
        return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", key).upper()


def tabwrite(lines: list[str], minwidth: int = 10, padding: int = 3) -> list[str]:
    """Align tab-separated cells as Go's tabwriter with docker's settings (10, 1, 3, ' ')."""
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for cells in rows:
        for i, cell in enumerate(cells[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    out = []
    for cells in rows:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])]
        out.append("".join(padded) + cells[-1])
    return out


def render_rows(fmt: str, rows: list, headers: dict | None = None) -> list[str]:
    """Lines for `ls`-style output: a `table` format gets a header row; cells are aligned."""
    fmt = unescape(fmt)
    is_table = fmt.startswith(TABLE)
    if is_table:
        fmt = fmt[len(TABLE) :].strip()
    lines = []
    if is_table:
        lines.append(render(fmt, _Headers(headers or {})))
    for row in rows:
        lines.append(render(fmt, row))
    text = "\n".join(lines)
    if not lines:
        return []
    # Only a table is aligned (docker's formatter.Context.postFormat): `--format '{{.A}}\t{{.B}}'`
    # prints its tabs as they are, for scripts to split on.
    return tabwrite(text.split("\n")) if is_table and "\t" in text else text.split("\n")


# -- docker's human units (github.com/docker/go-units) --------------------------------------


def human_size(size: float, precision: int = 3) -> str:
    """Decimal units with 3 significant digits, as `docker images` prints sizes: 4.26MB
    (go-units' HumanSizeWithPrecision; HumanSize itself, docker's "reclaimed space", is 4)."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    size = float(size)
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.{precision}g}{units[i]}"


def inspect_each(client, paths: list[str], fmt: str | None) -> int:
    """`orch X inspect REF...`: GET each path, print what was found (see print_inspected),
    report each failure as one line, as docker does; 1 if any failed."""
    import sys

    from orch.errors import OrchError

    found, failed = [], 0
    for path in paths:
        try:
            found.append(client.call("GET", path))
        except OrchError as err:
            print(f"orch: {err}", file=sys.stderr)
            failed = 1
    print_inspected(found, fmt)
    return failed


def _sorted(value):
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def print_inspected(objects: list, fmt: str | None) -> None:
    """What every `inspect` prints: each object through `--format`, or all of them as one JSON
    array, indented as docker prints it."""
    if fmt:
        for obj in objects:
            # docker renders inspect templates on the JSON decoded into Go maps, whose keys
            # `json` prints sorted ({{json .HostConfig.RestartPolicy}}).
            print(render(fmt, _sorted(obj)))
    else:
        import json

        print(json.dumps(objects, indent=4))
