"""Word expansion in Dockerfiles, as buildkit's shell lexer does it.

A Dockerfile's arguments are not run through a shell: the builder expands them itself, with a
small subset of POSIX sh (buildkit `frontend/dockerfile/shell/lex.go`, whose rules this module
follows, tested against buildkit's own `envVarTest` table):

- quotes: '...' keeps everything literally (no escapes inside); "..." expands `$` and lets the
  escape character protect `"`, `$` and itself, and keeps it before anything else;
- the escape character (`\\`, or the backtick after `# escape=``) outside quotes protects the next
  character; at the very end of the word it disappears;
- `$NAME`, `${NAME}`, positional (`$1`, `${999}`) and special (`$@ $* $# $? $- $$ $! $0`)
  parameters, which a Dockerfile never sets, so they expand to nothing;
- `${NAME:-word}` `${NAME-word}` `${NAME:+word}` `${NAME+word}` `${NAME:?msg}` `${NAME?msg}`,
  the word itself expanded; `${NAME#pat}` `${NAME##pat}` `${NAME%pat}` `${NAME%%pat}`
  `${NAME/pat/repl}` `${NAME//pat/repl}` with `*` and `?` wildcards;
- `process_words` splits the result into words on unquoted white space, after expansion, so an
  unquoted variable holding spaces gives several words.

Anything else after `${NAME` (`:=`, a bare `:`) is an error, as in buildkit.

One deliberate difference: buildkit's ProcessWords shares one word buffer between a word and
the `${NAME:-word}` inside it, so in `ab${X:-y}` it can lose the `ab`; here each level keeps its
own buffer. ProcessWord (one string), which the envVarTest table checks, is not affected.

Knobs that the Dockerfile parser needs (buildkit's Lex fields): `raw_quotes` keeps the quote
characters in the result, `raw_escapes` keeps the escape characters, `skip_unset` leaves a
reference to an unset variable as it was written.
"""

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from orch.errors import UserError


class ExpansionError(UserError):
    """A word that cannot be expanded. The message names the word; callers add the file and
    line."""


_SPECIAL_PARAMS = frozenset("@*#?-$!0")


def is_space(ch: str) -> bool:
    """Go's unicode.IsSpace (Python's str.isspace also counts the ASCII separators 0x1c-0x1f)."""
    if ord(ch) < 0x100:
        return ch in "\t\n\v\f\r \x85\xa0"
    return ch.isspace()


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L")


def _is_digit(ch: str) -> bool:
    return unicodedata.category(ch) == "Nd"


@dataclass
class Lexer:
    escape: str = "\\"
    raw_quotes: bool = False
    raw_escapes: bool = False
    skip_unset: bool = False
    skip_quotes: bool = False

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand `word` into one string (spaces kept)."""
        return self._run(word, env)[0]

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """Expand `word` and split the result into words on unquoted white space."""
        return self._run(word, env)[1]

    def _run(self, word: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
        try:
            return _Scan(self, word, env).process_until(None, self.raw_escapes)
        except _Failure as err:
            raise ExpansionError(f"failed to process {_go_quote(word)}: {err}") from None


class _Failure(Exception):
    pass


class _Words:
    """Collects the words of process_words: unquoted white space that came from the source or
    from an expanded variable separates words; quoted or escaped text never does."""

    def __init__(self):
        self.buf: list[str] = []
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if is_space(ch):
            if self.in_word and self.buf:
                self.words.append("".join(self.buf))
                self.buf.clear()
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.buf.append(text)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.buf:
            self.words.append("".join(self.buf))
            self.buf.clear()
        return self.words


class _Scan:
    def __init__(self, lexer: Lexer, text: str, env: Mapping[str, str]):
        self.lexer = lexer
        self.escape = lexer.escape
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lexer.raw_escapes

    def peek(self) -> str | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def next(self) -> str | None:
        ch = self.peek()
        if ch is not None:
            self.pos += 1
        return ch

    def process_until(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        """Expand up to `stop` (consumed) or the end of the text when `stop` is None."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._process_until(stop)
        finally:
            self.raw_escapes = saved

    def _process_until(self, stop: str | None) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        special = {"$": self.dollar, "<": self.possible_heredoc}
        if not self.lexer.skip_quotes:
            special["'"] = self.single_quote
            special['"'] = self.double_quote
        while (ch := self.peek()) is not None:
            if stop is not None and ch == stop:
                self.next()
                return "".join(result), words.result()
            if ch in special:
                text = special[ch]()
                result.append(text)
                # Only what a variable expanded to is split into words; quoted text is kept.
                words.add_string(text) if ch == "$" else words.add_raw(text)
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    words.add_raw(ch)
                    result.append(ch)
                ch = self.next()
                if ch is None:
                    break  # an escape at the very end disappears
                words.add_raw(ch)
            else:
                words.add_char(ch)
            result.append(ch)
        if stop is not None:
            raise _Failure(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def single_quote(self) -> str:
        # Everything up to the next ' is literal; a ' cannot be escaped inside.
        out = []
        quote = self.next()
        if self.lexer.raw_quotes:
            out.append(quote)
        while True:
            ch = self.next()
            if ch is None:
                raise _Failure("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lexer.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        # `$` expands; the escape character protects ", $ and itself and is kept before
        # anything else (sh's historic rule).
        out = []
        quote = self.next()
        if self.lexer.raw_quotes:
            out.append(quote)
        while True:
            ch = self.peek()
            if ch is None:
                raise _Failure("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.lexer.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self.peek()
                if following is None:
                    continue
                if following in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        """A variable name: letters, digits and _, or all the digits of a positional
        parameter, or one special parameter character."""
        out = []
        while (ch := self.peek()) is not None:
            if not out and _is_digit(ch):
                while (ch := self.peek()) is not None and _is_digit(ch):
                    out.append(self.next())
                return "".join(out)
            if not out and ch in _SPECIAL_PARAMS:
                return self.next()
            if not (_is_letter(ch) or _is_digit(ch) or ch == "_"):
                break
            out.append(self.next())
        return "".join(out)

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.lexer.skip_unset:
                return "$" + name
            return value
        self.next()
        if self.peek() is None:
            raise _Failure("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise _Failure("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch is None:
            raise _Failure("syntax error: missing '}'")
        if ch == "}":
            value, found = self.lookup(name)
            if not found and self.lexer.skip_unset:
                return "${" + name + "}"
            return value
        if ch == "/":
            return self.replace(name)
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            modifier += ch or ""
        elif ch not in "+-?#%":
            raise _Failure(f"unsupported modifier ({_shown(modifier)}) in substitution")
        patterns = ch in ("#", "%")
        if null_is_unset and patterns:
            raise _Failure(f"unsupported modifier ({_shown(modifier)}) in substitution")
        word = self.until_brace("}", patterns)
        value, found = self.lookup(name)
        if self.lexer.skip_unset and not found:
            return "${" + name + modifier + word + "}"
        empty = not found or (null_is_unset and value == "")
        if ch == "-":
            return word if empty else value
        if ch == "+":
            return "" if empty else word
        if ch == "?":
            if not found:
                raise _Failure(f"{name}: {_shown(word) or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise _Failure(f"{name}: {_shown(word) or 'is not allowed to be empty'}")
            return value
        if not patterns:
            # `${NAME:=word}`, `${NAME:word}`: sh's assignment and substring forms.
            raise _Failure(f"unsupported modifier ({_shown(modifier)}) in substitution")
        # '#' trims a prefix, '%' a suffix; doubled, the longest match.
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        return _trim_suffix(word, value, greedy) if ch == "%" else _trim_prefix(word, value, greedy)

    def until_brace(self, stop: str, raw_escapes: bool) -> str:
        try:
            return self.process_until(stop, raw_escapes)[0]
        except _Failure:
            if self.peek() is None:
                raise _Failure("syntax error: missing '}'" if stop == "}" else "syntax error: missing '/' in ${}") from None
            raise

    def replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        pattern = self.until_brace("/", True)
        replacement = self.until_brace("}", True)
        value, found = self.lookup(name)
        if self.lexer.skip_unset and not found:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = _pattern_to_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return regex.sub(lambda m: _go_expand(replacement, m), value)
        match = regex.search(value)
        if match:
            value = value[: match.start()] + replacement + value[match.end():]
        return value

    def possible_heredoc(self) -> str:
        # `<<` followed by blanks is kept together, so that `<< EOF` stays one word for the
        # heredoc detector.
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        blanks = []
        while (ch := self.peek()) is not None and ch in "\t\r ":
            blanks.append(self.next())
        return "<<" + "".join(blanks)


def _pattern_to_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern:
    """A shell wildcard pattern (`*`, `?`, escapes; no brackets) as a regular expression."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            # `\}` and `\/` were needed to write the pattern inside ${}; they are literal.
            if i < len(pattern) and pattern[i] in "}/":
                continue
            escaped = pattern[i] if i < len(pattern) else ""
            i += 1
            if escaped not in ("*", "?", "\\") or not escaped:
                raise _Failure(f"invalid pattern ({_shown(pattern)}) in substitution: invalid escape '\\{_shown(escaped)}'")
            out.append("\\" + escaped)
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _pattern_to_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end():] if match else value


def _reverse_pattern(pattern: str) -> str:
    # Reverse the pattern but keep each escape before the character it escapes.
    tokens = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i : i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regular expression finds the leftmost match, not the shortest rightmost one, so trim
    # a prefix of the reversed value with the reversed pattern.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def _go_expand(template: str, match: re.Match) -> str:
    """Go's Regexp.Expand, which `${NAME//pat/repl}` applies to `repl`: `$$` is a dollar,
    `$0`/`${0}` the whole match, any other `$name` an (absent) group, so empty."""
    out = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch != "$" or i + 1 == len(template):
            out.append(ch)
            i += 1
            continue
        if template[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if template[i + 1] == "{":
            end = template.find("}", i + 2)
            name = template[i + 2 : end] if end > 0 else ""
            if end < 0 or not re.fullmatch(r"\w+", name):
                out.append(ch)
                i += 1
                continue
            i = end + 1
        else:
            m = re.compile(r"\w+").match(template, i + 1)
            if not m:
                out.append(ch)
                i += 1
                continue
            name = m.group()
            i = m.end()
        if name.isdigit() and int(name) == 0:
            out.append(match.group(0))
    return "".join(out)


def _shown(text: str) -> str:
    """User text inside a message: as is when it is printable, else Go-quoted, so that the
    message stays on one line."""
    return text if text.isprintable() else _go_quote(text)


def _go_quote(text: str) -> str:
    """Go's strconv.Quote: a double-quoted string with Go escapes, printable runes as-is."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch == " " or (ch.isprintable() and not is_space(ch)):
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")  # a byte that was not UTF-8 (surrogateescape)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}

go_quote = _go_quote


def process_word(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """Expand one Dockerfile word with buildkit's rules."""
    return Lexer(escape=escape).process_word(word, env)


def process_words(word: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """Expand and split into words with buildkit's rules."""
    return Lexer(escape=escape).process_words(word, env)
