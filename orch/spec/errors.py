"""The stack-file error: every problem of a file as one self-contained line.

A stack file usually has more than one mistake, and fixing them one run at a time is tedious, so
the loader collects every problem it can find into a `Problems` list and raises one
`StackError` at the end. Each line reads `FILE:LINE:COL: key.path[0]: what is wrong[; did you
mean 'x'?]` so that editors and terminals can jump to it.
"""

import difflib
import re
from collections.abc import Iterable
from typing import NamedTuple

from orch.errors import UserError


class Mark(NamedTuple):
    """Where a value sits in a file: 1-based line and column, as editors count."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class StackError(UserError):
    """One or more problems in stack files; `lines` holds them, `str()` joins them."""

    def __init__(self, lines: Iterable[str]):
        # The same problem found twice is said once; a line never breaks, whatever the file
        # held (a key with a newline in it).
        self.lines = list(dict.fromkeys(_one_line(line) for line in lines))
        super().__init__("\n".join(self.lines))


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


_PLAIN_KEY = re.compile(r"^[\w.\-/@:+ ]+$")


def format_path(path: Iterable[object]) -> str:
    """('services', 'web', 'ports', 0) -> 'services.web.ports[0]'; an odd key is quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(str(part)):
            out += ("." if out else "") + str(part)
        else:
            out += f"[{str(part)!r}]"
    return out


def suggest(word: str, choices: Iterable[str]) -> str:
    """'; did you mean 'ports'?' when a choice is close to `word`, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class Problems:
    """A list of error lines collected while loading; `check()` raises them all at once."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.warnings: list[str] = []  # not errors: an unset variable, an obsolete key
        self.files: list[str] = []  # the files in the order they were read, to sort by

    def add(self, mark: Mark | None, path: Iterable[object], message: str) -> None:
        where = f"{mark}: " if mark else ""
        key = format_path(path)
        self.lines.append(f"{where}{key}: {message}" if key else f"{where}{message}")

    def extend(self, err: StackError) -> None:
        self.lines.extend(err.lines)

    def __bool__(self) -> bool:
        return bool(self.lines)

    def check(self) -> None:
        if self.lines:
            raise StackError(sort_lines(self.lines, self.files))


_WHERE = re.compile(r"^(.+?):(\d+):(\d+): ")


def sort_lines(lines: list[str], files: list[str] = ()) -> list[str]:
    """Lines in file order (files in the order they first appear), then line and column, so
    the output reads top to bottom like the file; lines without a position come last."""
    order: dict[str, int] = {name: i for i, name in enumerate(dict.fromkeys(files))}
    keyed = []
    for index, line in enumerate(lines):
        match = _WHERE.match(line)
        if match:
            rank = order.setdefault(match.group(1), len(order))
            keyed.append(((0, rank, int(match.group(2)), int(match.group(3)), index), line))
        else:
            keyed.append(((1, 0, 0, 0, index), line))
    return [line for _, line in sorted(keyed)]
