"""The Dockerfile parser: text in, a list of instructions out. Pure.

It agrees with buildkit's parser (`frontend/dockerfile/parser`): for every case of buildkit's
`testfiles`, `dump(parse(text))` prints exactly buildkit's `result`. The rules, in the order
the parser applies them:

1. Parser directives (`# escape=`` `, `# syntax=`, `# check=`) are comments at the very top;
   the first line that is not one (a blank line, another comment, an instruction) ends them.
   A directive may appear once. `escape` is a backslash or a backtick.
2. A line whose last non-blank character is the escape character continues on the next line;
   the escape and the blanks after it are dropped. Inside a continued instruction, comment
   lines are skipped and so are empty lines (buildkit warns; we keep the warning).
   Leading blanks are stripped from the first line of an instruction only.
3. An instruction is a keyword, then flags (`--name=value` words, quotes and escapes removed,
   until the first word without `--` or a bare `--`), then the arguments, parsed per keyword:
   JSON arrays (exec form) for RUN, CMD, ENTRYPOINT, SHELL, ADD, COPY, VOLUME when the text is
   a JSON array of strings; `KEY=value` words (or the old `KEY value`) for ENV and LABEL;
   words for ARG; whitespace-split for FROM and EXPOSE; the text as one string otherwise.
4. RUN, ADD and COPY in shell form (also under ONBUILD) may name heredocs (`<<EOF`, `<<-EOF`
   strips leading tabs, a quoted delimiter turns expansion off, several per line); their
   bodies follow the instruction line, in order, each up to its delimiter.

Unknown keywords parse (buildkit keeps them as an empty node); `validate` in
`orch.build.dockerfile_checks` refuses them with a suggestion, with the other semantic checks
a builder needs.
"""

import json
import re
from dataclasses import dataclass, field, replace

from orch.build.shell import ExpansionError, Lexer, go_quote
from orch.errors import UserError


class DockerfileError(UserError):
    """A Dockerfile that cannot be parsed. The message starts with `FILE:LINE: `."""


@dataclass(frozen=True)
class Heredoc:
    name: str  # the delimiter word, quotes removed
    content: str  # the body, with its newlines; leading tabs are still there for <<-
    expand: bool = True  # False when any part of the delimiter was quoted
    chomp: bool = False  # <<- : strip leading tabs from the body's lines
    fd: int = 0  # 3<<EOF gives 3


@dataclass(frozen=True)
class Instruction:
    command: str  # the keyword as written ("run", "RUN")
    args: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()  # "--from=build", "--link", quotes and escapes removed
    original: str = ""  # the instruction's text after joining continuation lines
    line: int = 0  # first line, from 1
    end_line: int = 0  # last line, heredoc bodies included
    heredocs: tuple[Heredoc, ...] = ()
    json: bool = False  # exec form: args came from a JSON array
    child: "Instruction | None" = None  # the trigger that ONBUILD holds
    comments: tuple[str, ...] = ()  # the comment lines just before it

    @property
    def keyword(self) -> str:
        return self.command.upper()

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """ENV and LABEL arguments as (key, value) pairs."""
        return [(self.args[i], self.args[i + 1]) for i in range(0, len(self.args) - 2, 3)]


@dataclass(frozen=True)
class Dockerfile:
    instructions: tuple[Instruction, ...]
    filename: str = "Dockerfile"
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)  # escape, syntax, check
    warnings: tuple[str, ...] = ()


KNOWN = ("add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck", "label", "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir")
HEREDOC_COMMANDS = ("add", "copy", "run")
DIRECTIVES = ("syntax", "escape", "check")

# Go's regexp classes are ASCII; Python's \s and \d are Unicode, hence the explicit sets.
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z", re.S)
_HEREDOC = re.compile(r"([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)\Z", re.S)


class _Failure(Exception):
    pass


def _fail(filename: str, line: int, message: str) -> DockerfileError:
    return DockerfileError(f"{filename}:{line}: {message}" if line > 0 else f"{filename}: {message}")


def _go_space(ch: str) -> bool:
    return ch in "\t\n\v\f\r \x85\xa0" or (ord(ch) > 0xFF and ch.isspace())


def _trim_left(text: str) -> str:
    i = 0
    while i < len(text) and _go_space(text[i]):
        i += 1
    return text[i:]


def _trim(text: str) -> str:
    text = _trim_left(text)
    j = len(text)
    while j > 0 and _go_space(text[j - 1]):
        j -= 1
    return text[:j]


def _is_comment(line: str) -> bool:
    return _trim_left(line).startswith("#")


class _Directives:
    """The parser's state: which directives it has seen, and the escape character."""

    def __init__(self):
        self.done = False
        self.seen: dict[str, str] = {}
        self.set_escape("\\")

    def set_escape(self, escape: str) -> None:
        if escape not in ("`", "\\"):
            raise _Failure(f"invalid escape token '{escape}' does not match ` or \\")
        self.escape = escape
        e = re.escape(escape)
        # An escape as the last non-blank character continues the line, unless it is itself
        # escaped (`\\`), which the first branch's [^\\] excludes; the second branch is an
        # escape alone on its line.
        self.continuation = re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")

    def possible_directive(self, line: str) -> bool:
        if self.done:
            return False
        if not line.startswith("#"):
            self.done = True
            return False
        match = _DIRECTIVE.match(_trim_left(line[1:]))
        name = match.group(1).lower() if match else ""
        if name not in DIRECTIVES:
            self.done = True
            return False
        if name in self.seen:
            raise _Failure(f"only one {name} parser directive can be used")
        self.seen[name] = match.group(2)
        if name == "escape":
            self.set_escape(match.group(2))
        return True


def _split_lines(text: str) -> list[str]:
    # Lines keep their "\n", as buildkit's scanner does: heredoc bodies are copied verbatim.
    lines = text.split("\n")
    result = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        result.append(lines[-1])
    return result


def parse(text: str | bytes, *, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile. Raise DockerfileError naming `filename` and the line.

    Bytes that are not UTF-8 are kept as surrogate escapes (buildkit passes them through):
    write heredoc bodies back with `.encode("utf-8", "surrogateescape")`."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    d = _Directives()
    lines = _split_lines(text)
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    instructions: list[Instruction] = []
    warnings: list[str] = []
    comments: list[str] = []
    i = 0  # the next line to read
    while i < len(lines):
        raw = lines[i]
        if _is_comment(raw):
            comment = _trim(_trim_left(raw)[1:])
            comments = comments + [comment] if comment else []
        try:
            line, is_directive = _process_line(d, raw, strip_left=True)
        except _Failure as err:
            raise _fail(filename, i + 1, str(err)) from None
        if is_directive:
            comments = comments[:-1]
        i += 1
        start = i
        line, ended = _trim_continuation(d, line)
        if ended and not line:
            continue
        parts = [line]
        empty_continuation = False
        while not ended and i < len(lines):
            raw = lines[i]
            try:
                line, _ = _process_line(d, raw, strip_left=False)
            except _Failure as err:
                raise _fail(filename, i + 1, str(err)) from None
            i += 1
            if _is_comment(raw):
                continue
            if not _trim_left(line):
                empty_continuation = True
                continue
            line, ended = _trim_continuation(d, line)
            parts.append(line)
        joined = "".join(parts)
        if empty_continuation:
            warnings.append(f"{filename}:{i}: empty continuation line found in: {joined}")
        try:
            node = _instruction(joined, d)
            heredocs = []
            if _can_contain_heredoc(node) and "<<" in joined:
                for doc in _heredocs_in(joined):
                    content, i, terminated = _read_heredoc(lines, i, doc)
                    if not terminated:
                        raise _fail(filename, start, f"unterminated heredoc '{doc.name}' (no line '{doc.name}' after line {start})")
                    heredocs.append(Heredoc(doc.name, content, doc.expand, doc.chomp, doc.fd))
        except (_Failure, ExpansionError) as err:
            raise _fail(filename, start, str(err)) from None
        instructions.append(replace(node, line=start, end_line=i, heredocs=tuple(heredocs), comments=tuple(comments)))
        comments = []
    if not instructions:
        raise _fail(filename, 0, "file with no instructions")
    return Dockerfile(tuple(instructions), filename, d.escape, dict(d.seen), tuple(warnings))


def _process_line(d: _Directives, raw: str, *, strip_left: bool) -> tuple[str, bool]:
    line = raw.rstrip("\r\n")
    if strip_left:
        line = _trim_left(line)
    is_directive = d.possible_directive(line)
    return ("" if _is_comment(line) else line), is_directive


def _trim_continuation(d: _Directives, line: str) -> tuple[str, bool]:
    match = d.continuation.search(line)
    if match is None:
        return line, True
    return line[: match.start()] + (match.group(1) or ""), False


def _read_heredoc(lines: list[str], i: int, doc: Heredoc) -> tuple[str, int, bool]:
    body = []
    while i < len(lines):
        raw = lines[i]
        i += 1
        candidate = raw.rstrip("\r\n")
        if doc.chomp:
            candidate = candidate.lstrip("\t")
        if candidate == doc.name:
            return "".join(body), i, True
        body.append(raw)
    return "".join(body), i, False


# One instruction line.


def _instruction(line: str, d: _Directives) -> Instruction:
    command, flags, rest = _split_command(line, d)
    args, is_json, child = _PARSERS.get(command.lower(), _parse_unknown)(rest, d)
    return Instruction(command=command, args=tuple(args), flags=tuple(flags), original=line, json=is_json, child=child)


def _split_command(line: str, d: _Directives) -> tuple[str, list[str], str]:
    parts = _WHITESPACE.split(_trim(line), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    rest, flags = _extract_flags(parts[1], d)
    return parts[0], flags, _trim(rest)


def _extract_flags(line: str, d: _Directives) -> tuple[str, list[str]]:
    """Leading `--flag` words, with quotes and escapes removed, and the rest of the line."""
    words: list[str] = []
    word: list[str] = []
    phase = "spaces"
    quote = ""
    blank_ok = False
    pos = 0
    while pos <= len(line):
        ch = line[pos] if pos < len(line) else ""
        if phase == "spaces":
            if pos == len(line):
                break
            if _go_space(ch):
                pos += 1
                continue
            if not line.startswith("--", pos):
                return line[pos:], words
            phase = "word"
        if pos == len(line):
            text = "".join(word)
            if text != "--" and (blank_ok or text):
                words.append(text)
            break
        if phase == "word":
            if _go_space(ch):
                text = "".join(word)
                phase = "spaces"
                if text == "--":
                    return line[pos:], words
                if blank_ok or text:
                    words.append(text)
                word.clear()
                blank_ok = False
            elif ch in "'\"":
                quote, blank_ok, phase = ch, True, "quote"
            else:
                if ch == d.escape:
                    if pos + 1 == len(line):
                        pos += 1
                        continue  # an escape at the end disappears
                    pos += 1
                    ch = line[pos]
                word.append(ch)
        else:  # in quotes
            if ch == quote:
                phase = "word"
            else:
                if ch == d.escape:
                    if pos + 1 == len(line):
                        phase = "word"
                        pos += 1
                        continue
                    pos += 1
                    ch = line[pos]
                word.append(ch)
        pos += 1
    return "", words


# Argument parsers, one per keyword: (rest, directives) -> (args, json form, ONBUILD child).


def _parse_unknown(rest, d):
    return [], False, None


def _parse_json(rest: str) -> list[str] | None:
    """The strings of a JSON array, or None when `rest` is not a JSON array (then the
    instruction is in shell form). A JSON array holding anything but strings is an error."""
    rest = _trim_left(rest)
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if not all(isinstance(item, str) for item in value):
        raise _Failure("when using JSON array syntax, arrays must be comprised of strings only")
    # Go replaces a lone surrogate escape (\ud800) with U+FFFD; Python keeps it.
    return [re.sub("[\ud800-\udfff]", "\ufffd", item) for item in value]


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Go's decoder refuses them


def _parse_maybe_json(rest, d):
    if not rest:
        return [], False, None
    items = _parse_json(rest)
    if items is not None:
        return items, True, None
    return [rest], False, None


def _parse_maybe_json_to_list(rest, d):
    items = _parse_json(rest)
    if items is not None:
        return items, True, None
    return _parse_whitespace(rest, d)


def _parse_whitespace(rest, d):
    return (_WHITESPACE.split(rest) if rest else []), False, None


def _parse_string(rest, d):
    return ([rest] if rest else []), False, None


def _parse_name_or_name_value(rest, d):
    return _words(rest, d), False, None


def _parse_healthcheck(rest, d):
    # The first word is the type (CMD, NONE); the rest is parsed like CMD.
    sep = 0
    while sep < len(rest) and not _go_space(rest[sep]):
        sep += 1
    if sep == 0:
        return [], False, None
    command, is_json, _ = _parse_maybe_json(_trim_left(rest[sep:]), d)
    return [rest[:sep], *command], is_json, None


def _parse_onbuild(rest, d):
    if not rest:
        return [], False, None
    return [], False, _instruction(rest, d)


def _name_value(keyword: str):
    def parse(rest, d):
        words = _words(rest, d)
        if not words:
            return [], False, None
        if "=" not in words[0]:
            # The old form, `ENV NAME some value`: one pair, the value is the rest verbatim.
            parts = _WHITESPACE.split(rest, maxsplit=1)
            if len(parts) < 2:
                raise _Failure(f"{keyword} must have two arguments")
            return [parts[0], parts[1], ""], False, None
        args = []
        for word in words:
            if "=" not in word:
                raise _Failure(f"Syntax error - can't find = in {go_quote(word)}. Must be of the form: name=value")
            key, value = word.split("=", 1)
            args += [key, value, "="]
        return args, False, None

    return parse


def _words(rest: str, d: _Directives) -> list[str]:
    """Split on blanks outside quotes, keeping the quotes and escapes (they are removed when
    the builder expands the words)."""
    words: list[str] = []
    word: list[str] = []
    phase = "spaces"
    quote = ""
    blank_ok = False
    pos = 0
    while pos <= len(rest):
        ch = rest[pos] if pos < len(rest) else ""
        if phase == "spaces":
            if pos == len(rest):
                break
            if _go_space(ch):
                pos += 1
                continue
            phase = "word"
        if pos == len(rest):
            if blank_ok or word:
                words.append("".join(word))
            break
        if phase == "word":
            if _go_space(ch):
                phase = "spaces"
                if blank_ok or word:
                    words.append("".join(word))
                word.clear()
                blank_ok = False
                pos += 1
                continue
            if ch in "'\"":
                quote, blank_ok, phase = ch, True, "quote"
            if ch == d.escape:
                if pos + 1 == len(rest):
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
        else:
            if ch == quote:
                phase = "word"
            if ch == d.escape and quote != "'":
                if pos + 1 == len(rest):
                    phase = "word"
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
        pos += 1
    return words


_PARSERS = {
    "add": _parse_maybe_json_to_list,
    "arg": _parse_name_or_name_value,
    "cmd": _parse_maybe_json,
    "copy": _parse_maybe_json_to_list,
    "entrypoint": _parse_maybe_json,
    "env": _name_value("ENV"),
    "expose": _parse_whitespace,
    "from": _parse_whitespace,
    "healthcheck": _parse_healthcheck,
    "label": _name_value("LABEL"),
    "maintainer": _parse_string,
    "onbuild": _parse_onbuild,
    "run": _parse_maybe_json,
    "shell": _parse_maybe_json,
    "stopsignal": _parse_string,
    "user": _parse_string,
    "volume": _parse_maybe_json_to_list,
    "workdir": _parse_string,
}


# Heredocs.


def _can_contain_heredoc(node: Instruction) -> bool:
    if node.command.lower() == "onbuild" and node.child is not None:
        node = node.child
    return node.command.lower() in HEREDOC_COMMANDS and not node.json


def parse_heredoc(word: str) -> Heredoc | None:
    """The heredoc that a word such as `<<EOF`, `<<-'EOF'` or `3<<EOF` opens, or None."""
    match = _HEREDOC.match(word)
    if not match or not match.group(3):
        return None
    fd, chomp, rest = match.groups()
    # An unbalanced quote in the delimiter raises ExpansionError.
    words = Lexer(skip_unset=True).process_words(rest, {})
    if len(words) != 1:
        return None
    raw = Lexer(skip_unset=True, raw_quotes=True).process_words(rest, {})
    # A delimiter with any quoted part turns expansion of the body off, as in sh.
    expand = words[0].count("'") + words[0].count('"') == raw[0].count("'") + raw[0].count('"')
    return Heredoc(name=words[0], content="", expand=expand, chomp=chomp == "-", fd=int(fd or 0))


def _heredocs_in(line: str) -> list[Heredoc]:
    try:
        words = Lexer(raw_quotes=True, raw_escapes=True, skip_unset=True).process_words(line, {})
    except ExpansionError:
        return []  # buildkit ignores a line its lexer cannot split: no heredocs
    return [doc for doc in map(parse_heredoc, words) if doc is not None]


def chomp_heredoc(content: str) -> str:
    """A `<<-` body with the leading tabs of each line removed."""
    return re.sub(r"(?m)^\t+", "", content)


# The dump: buildkit's `Node.Dump()` form, one s-expression per instruction.


def dump(dockerfile: Dockerfile) -> str:
    """Print the parse as buildkit's parser test results do (ends with a newline)."""
    return "".join(f"({dump_instruction(node)})\n" for node in dockerfile.instructions)


def dump_instruction(node: Instruction) -> str:
    out = node.command.lower()
    if node.flags:
        out += " [" + " ".join(go_quote(flag) for flag in node.flags) + "]"
    if node.child is not None:
        out += f" ({dump_instruction(node.child)})"
    elif node.command.lower() not in KNOWN:
        out += ' ""'  # buildkit keeps an unknown instruction as one empty argument
    for arg in node.args:
        out += " " + go_quote(arg)
    return out.strip()
