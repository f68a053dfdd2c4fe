"""`.env` files and service `env_file`s, in compose's dotenv dialect.

One `KEY=VALUE` a line, optionally prefixed by `export`. `#` starts a comment at the start of
a line or, in an unquoted value, after a space. Single quotes keep their text as it is (but `\\'`);
double quotes understand `\\n`, `\\t`, `\\"`, `\\\\`; both may span lines. Unquoted and double-quoted
values are interpolated (`${OTHER}`) from the variables read so far and then the lookup the
caller gives, as compose does. A bare `KEY` means "take KEY from the environment" and reads as
None.
"""

import re
from pathlib import Path

from orch.spec.errors import StackError
from orch.spec.interpolate import InterpolationError, Lookup, substitute
from orch.spec.yamltree import read_text

_KEY = re.compile(r"^(?:export\s+)?([A-Za-z0-9_][A-Za-z0-9_.\-]*)\s*(=|$)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$$"}


def parse_env_text(text: str, file: str, lookup: Lookup | None = None) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    problems: list[str] = []

    def chained(name: str) -> str | None:
        if name in values and values[name] is not None:
            return values[name]
        return lookup(name) if lookup else None

    lines = text.splitlines()
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        match = _KEY.match(line)
        if match is None:
            problems.append(f"{file}:{number}:1: invalid line {line[:40]!r}; write KEY=VALUE")
            continue
        key = match.group(1)
        if match.group(2) != "=":
            values[key] = None
            continue
        rest = line[match.end() :].lstrip()
        try:
            if rest[:1] == "'":
                body, i = _quoted(rest[1:], "'", {"'": "'"}, lines, i)
                values[key] = body
            elif rest[:1] == '"':
                body, i = _quoted(rest[1:], '"', _ESCAPES, lines, i)
                values[key] = substitute(body, chained)
            else:
                body = re.split(r"\s+#", rest, maxsplit=1)[0].strip()
                values[key] = substitute(body, chained)
        except (ValueError, InterpolationError) as err:
            problems.append(f"{file}:{number}:1: {key}: {err}")
    if problems:
        raise StackError(problems)
    return values


def _quoted(first: str, quote: str, escapes: dict[str, str], lines: list[str], i: int) -> tuple[str, int]:
    """The body of a quoted value, which may continue on the next lines. Single quotes keep
    everything but `\\'`; double quotes understand the usual backslash escapes."""
    text = first
    while True:
        out, pos = [], 0
        while pos < len(text):
            char = text[pos]
            if char == "\\" and pos + 1 < len(text) and text[pos + 1] in escapes:
                out.append(escapes[text[pos + 1]])
                pos += 2
                continue
            if char == quote:
                return "".join(out), i
            out.append(char)
            pos += 1
        if i >= len(lines):
            raise ValueError(f"unterminated {'single' if quote == "'" else 'double'} quote")
        text += "\n" + lines[i]
        i += 1


def read_env_file(path: Path, lookup: Lookup | None = None) -> dict[str, str | None]:
    if not path.exists():
        raise StackError([f"env file not found: {path}"])
    return parse_env_text(read_text(path), str(path), lookup)
