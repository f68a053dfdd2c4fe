"""`.dockerignore`: which files of a build context stay out of the build. Pure.

The rules are docker's (moby/patternmatcher and its `ignorefile` reader), so a context that
docker would send is the context orch sends:

Reading the file:
- a UTF-8 byte order mark on the first line is dropped;
- a line that starts with `#` (in the first column) is a comment;
- each pattern is stripped of surrounding blanks; empty lines are skipped;
- a leading `!` makes the pattern an exception (it re-includes what earlier lines excluded);
- patterns are cleaned as Go's filepath.Clean does (`./a//b/../c` is `a/c`), and a leading `/`
  is dropped: patterns are always relative to the context's root.

Matching a path (relative to the context, with `/`):
- `*` is any run of characters but `/`, `?` one character but `/`, `[a-z]` and `[^a-z]`
  classes, `\\` escapes the next character;
- `**` is any number of directories, zero included (`**/*.go`, `a/**/b`); a trailing `**`
  matches everything below;
- a pattern that matches a parent directory matches everything inside it (`build` excludes
  `build/out/x.o`);
- the last pattern that matches decides: an exception after an exclusion re-includes.
"""

import re
from dataclasses import dataclass

from orch.errors import UserError


def go_clean(path: str) -> str:
    """Go's path.Clean for slash-separated paths."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def read_patterns(text: str) -> list[tuple[int, str]]:
    """The patterns of a .dockerignore file as (line number, pattern), exceptions with their
    `!`, cleaned as docker cleans them."""
    patterns = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if number == 1:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append((number, "!" + pattern if invert else pattern))
    return patterns


_EXACT, _PREFIX, _SUFFIX, _REGEXP = "exact", "prefix", "suffix", "regexp"


@dataclass(frozen=True)
class Pattern:
    text: str  # cleaned, without the `!`
    exception: bool
    kind: str
    regex: re.Pattern | None = None

    def matches(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.text
        if self.kind == _PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind == _SUFFIX:
            suffix = self.text[2:]
            # `**/foo` also matches `foo` itself, at the top.
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        return self.regex.match(path) is not None


class Matcher:
    """The compiled patterns of one .dockerignore file."""

    def __init__(self, patterns: list[str], *, filename: str = ".dockerignore", lines: list[int] | None = None):
        self.patterns: list[Pattern] = []
        for i, raw in enumerate(patterns):
            where = f"{filename}:{lines[i]}" if lines else filename
            pattern = raw.strip()
            if not pattern:
                continue
            pattern = go_clean(pattern)
            exception = pattern.startswith("!")
            if exception:
                if len(pattern) == 1:
                    raise UserError(f'{where}: illegal exclusion pattern "!"; write the path to re-include after it')
                pattern = pattern[1:]
            problem = _syntax_problem(pattern)
            if problem:
                raise UserError(f"{where}: bad pattern '{raw.strip()}': {problem}")
            self.patterns.append(_compile(pattern, exception))

    @property
    def has_exceptions(self) -> bool:
        """True when some pattern re-includes: then a builder must look inside excluded
        directories instead of skipping them whole."""
        return any(p.exception for p in self.patterns)

    def excludes(self, path: str) -> bool:
        """True when `path` (relative to the context, `/`-separated) stays out of the build."""
        path = go_clean(path)
        if path == ".":
            return False  # the context's root itself is never excluded
        parents = path.split("/")[:-1]
        matched = False
        for pattern in self.patterns:
            # An exclusion cannot change an excluded path, nor an exception an included one.
            if pattern.exception != matched:
                continue
            match = pattern.matches(path) or any(pattern.matches("/".join(parents[: i + 1])) for i in range(len(parents)))
            if match:
                matched = not pattern.exception
        return matched


def parse_dockerignore(text: str, *, filename: str = ".dockerignore") -> Matcher:
    """The matcher of a .dockerignore file's text; a bad pattern names the file and line."""
    numbered = read_patterns(text)
    return Matcher([p for _, p in numbered], filename=filename, lines=[n for n, _ in numbered])


def _compile(pattern: str, exception: bool) -> Pattern:
    """Translate a pattern to a match kind (exact, prefix `a/**`, suffix `**/a`) or a regular
    expression, as moby/patternmatcher does."""
    regex = "^"
    kind = _EXACT
    i = 0  # the position of the token being read, counted as the Go code counts it
    pos = 0
    n = len(pattern)
    while pos < n:
        ch = pattern[pos]
        pos += 1
        if ch == "*":
            if pos < n and pattern[pos] == "*":
                pos += 1
                if pos < n and pattern[pos] == "/":
                    pos += 1  # `**/` reads as `**`
                if pos == n:
                    # A trailing `**` takes everything below, as in .gitignore.
                    if kind == _EXACT:
                        kind = _PREFIX
                    else:
                        regex += ".*"
                        kind = _REGEXP
                else:
                    regex += "(.*/)?"
                    kind = _REGEXP
                if i == 0:
                    kind = _SUFFIX
            else:
                regex += "[^/]*"
                kind = _REGEXP
        elif ch == "?":
            regex += "[^/]"
            kind = _REGEXP
        elif ch in ".+()|{}$":
            regex += "\\" + ch
        elif ch == "\\":
            if pos < n:
                regex += re.escape(pattern[pos])
                pos += 1
                kind = _REGEXP
            else:
                regex += "\\\\"
        elif ch == "[":
            # A class, already checked by _syntax_problem: rebuilt item by item with each
            # character escaped, so that Python reads exactly the set that Go reads.
            negate = pattern.startswith("^", pos)
            pos += negate
            items = []
            while not (pattern[pos] == "]" and items):
                low, pos, _ = _class_char(pattern, pos)
                if pattern[pos] == "-":
                    high, pos, _ = _class_char(pattern, pos + 1)
                    items.append(f"{re.escape(low)}-{re.escape(high)}")
                else:
                    items.append(re.escape(low))
            pos += 1
            regex += "[" + ("^" if negate else "") + "".join(items) + "]"
            kind = _REGEXP
        elif ch == "]":
            regex += "\\]"
            kind = _REGEXP
        else:
            # Everything else is literal in a regular expression, `^` aside: docker leaves it
            # unescaped, so mid-pattern it anchors and never matches; so does ours.
            regex += ch
        i += 1
    if kind != _REGEXP:
        return Pattern(pattern, exception, kind)
    try:
        return Pattern(pattern, exception, kind, re.compile(regex + r"\Z"))
    except re.error as err:
        raise UserError(f"bad .dockerignore pattern '{pattern}': {err}") from None


def _syntax_problem(pattern: str) -> str | None:
    """What Go's filepath.Match would call ErrBadPattern: an escape at the end, or a `[...]`
    class that is not closed or holds an empty item or a bad range."""
    pos, n = 0, len(pattern)
    while pos < n:
        ch = pattern[pos]
        pos += 1
        if ch == "\\":
            if pos == n:
                return "a '\\' at the end escapes nothing"
            pos += 1
        elif ch == "[":
            if pos < n and pattern[pos] == "^":
                pos += 1
            items = 0
            while True:
                if pos == n:
                    return "a '[' class is not closed with ']'"
                if pattern[pos] == "]" and items > 0:
                    pos += 1
                    break
                low, pos, problem = _class_char(pattern, pos)
                if problem:
                    return problem
                if pos < n and pattern[pos] == "-":
                    high, pos, problem = _class_char(pattern, pos + 1)
                    if problem:
                        return problem
                    if high < low:
                        return f"the range '{low}-{high}' in a '[' class is backwards"
                items += 1
    return None


def _class_char(pattern: str, pos: int) -> tuple[str, int, str | None]:
    if pos == len(pattern) or pattern[pos] in "-]":
        return "", pos, "a '[' class holds an empty item or range"
    if pattern[pos] == "\\":
        pos += 1
        if pos == len(pattern):
            return "", pos, "a '\\' at the end escapes nothing"
    return pattern[pos], pos + 1, None
