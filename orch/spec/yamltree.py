"""YAML that remembers where every value came from.

pyyaml's node tree knows the line and column of each key and value; the plain objects it
constructs do not. We compose the node tree ourselves and build `Map` and `Seq` (a dict and a
list that also hold the `Mark` of each child), so any later stage (interpolation, merge,
validation) can say `compose.yaml:12:9: services.web.ports[0]: ...`.

Scalars follow the YAML 1.2 core schema, as compose-go (go-yaml v3) reads them: only
true/false are booleans ("yes", "on" stay strings) and `8080:80` is a string, not the base-60
integer 483680 that YAML 1.1 makes of it. Anchors, aliases and `<<` merge keys work; the
`!reset` and `!override` tags of compose-spec 13-merge.md are recorded on the parent mapping.
"""

import math
import re
from pathlib import Path

import yaml
import yaml.reader
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from orch.spec.errors import Mark, StackError, sort_lines

# A file that expands to more values than this is an alias bomb, not a stack.
MAX_VALUES = 200_000
MERGE_TAGS = ("!reset", "!override")


class Map(dict):
    """A mapping with the mark of itself, of each key, of each value, and merge tags by key."""

    def __init__(self, *args, mark: Mark | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.mark = mark
        self.key_marks: dict[str, Mark] = {}
        self.marks: dict[str, Mark] = {}
        self.tags: dict[str, str] = {}

    def put(self, key: str, value, mark: Mark | None = None, key_mark: Mark | None = None) -> None:
        self[key] = value
        if mark is not None:
            self.marks[key] = mark
        if key_mark is not None:
            self.key_marks[key] = key_mark

    def mark_of(self, key: str) -> Mark | None:
        return self.marks.get(key) or self.key_marks.get(key) or self.mark


class Seq(list):
    """A sequence with the mark of itself and of each item."""

    def __init__(self, *args, mark: Mark | None = None, marks: list | None = None):
        super().__init__(*args)
        self.mark = mark
        self.marks: list[Mark | None] = list(marks) if marks is not None else [mark] * len(self)

    def add(self, value, mark: Mark | None) -> None:
        self.append(value)
        self.marks.append(mark)

    def mark_of(self, index: int) -> Mark | None:
        return self.marks[index] if 0 <= index < len(self.marks) and self.marks[index] else self.mark


def mark_in(container, key) -> Mark | None:
    """The mark of `container[key]` when the container knows it."""
    if isinstance(container, (Map, Seq)):
        return container.mark_of(key)
    return None


def to_plain(tree):
    """The tree as plain dicts and lists (the models and the YAML writer want those)."""
    if isinstance(tree, dict):
        return {key: to_plain(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [to_plain(value) for value in tree]
    return tree


class _CoreResolver(BaseResolver):
    """The YAML 1.2 core schema: what go-yaml v3, and so docker compose, resolves."""

    yaml_implicit_resolvers: dict = {}


_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*|0[0-7_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|0b[01_]+)$"), list("-+0123456789"))
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)
_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


class _Loader(Reader, Scanner, Parser, Composer, SafeConstructor, _CoreResolver):
    def __init__(self, stream):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        _CoreResolver.__init__(self)


def _mark(file: str, node) -> Mark:
    return Mark(file, node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Turns a composed node tree into Map / Seq / scalars, collecting problems."""

    def __init__(self, file: str, loader: _Loader, merge_tags: dict[int, str]):
        self.file = file
        self.loader = loader
        self.merge_tags = merge_tags
        self.count = 0
        self.active: set[int] = set()
        # Problems that do not stop the build (duplicate keys), reported together at the end.
        self.problems: list[str] = []

    def fail(self, node, message: str):
        raise StackError([f"{_mark(self.file, node)}: {message}"])

    def build(self, node):
        self.count += 1
        if self.count > MAX_VALUES:
            self.fail(node, f"the file expands to more than {MAX_VALUES} values; check for alias loops")
        if id(node) in self.active:
            self.fail(node, "an alias refers to the value that contains it")
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                seq = Seq(mark=_mark(self.file, node), marks=[])
                for item in node.value:
                    seq.add(self.build(item), _mark(self.file, item))
                return seq
            return self.mapping(node)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: MappingNode) -> Map:
        out = Map(mark=_mark(self.file, node))
        seen: dict[str, object] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    mark = _mark(self.file, key_node)
                    self.problems.append(f"{mark}: duplicate key '{key_node.value}' (first at line {seen[key_node.value]})")
                else:
                    seen[key_node.value] = key_node.start_mark.line + 1
        try:
            self.loader.flatten_mapping(node)
        except yaml.YAMLError as err:
            raise StackError([_yaml_error_line(self.file, err)]) from None
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.fail(key_node, "a mapping key must be a plain string, not a list or mapping")
            key = self.scalar(key_node)
            if key is None or isinstance(key, (bytes, bool)):
                self.fail(key_node, f"a mapping key must be a string, not {key_node.value!r}")
            key = str(key_node.value) if isinstance(key, float) else str(key)
            if id(value_node) in self.merge_tags:
                out.tags[key] = self.merge_tags[id(value_node)]
            out.put(key, self.build(value_node), _mark(self.file, value_node), _mark(self.file, key_node))
        return out

    def scalar(self, node):
        tag = "tag:yaml.org,2002:str" if node.tag == "!" else node.tag
        text = node.value
        if tag == "tag:yaml.org,2002:str":
            return text
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag == "tag:yaml.org,2002:bool":
            return text.lower() == "true"
        if tag == "tag:yaml.org,2002:int":
            # As Go's strconv.ParseInt(s, 0, 64), which go-yaml v3 uses: 0o17, 017 (octal, as
            # file modes are written), 0x1f, 0b101.
            body = text.lstrip("+-").replace("_", "")
            sign = -1 if text.startswith("-") else 1
            try:
                if body[:2] in ("0o", "0x", "0b"):
                    return sign * int(body, 0)
                return sign * (int(body, 8) if body.startswith("0") and len(body) > 1 else int(body, 10))
            except ValueError:  # YAML 1.1's int forms that are no number to Go (`0b_`): a string
                return text
        if tag == "tag:yaml.org,2002:float":
            low = text.lower()
            if low.endswith(".inf"):
                return -math.inf if low.startswith("-") else math.inf
            if low == ".nan":
                return math.nan
            try:
                return float(text.replace("_", ""))
            except ValueError:
                self.fail(node, f"invalid number {text!r}")
        if tag == "tag:yaml.org,2002:merge":
            return "<<"
        if tag.startswith("tag:yaml.org,2002:") and tag != "tag:yaml.org,2002:binary":
            try:
                value = self.loader.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError, TypeError) as err:
                self.fail(node, f"invalid {tag.rsplit(':', 1)[-1]} value {text!r}: {err}")
            return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
        self.fail(node, f"unsupported YAML tag {tag}; only !reset and !override are known")


def _yaml_error_line(file: str, err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else file
    text = f"{context}, {problem}" if context else problem
    return f"{where}: invalid YAML: {' '.join(str(text).split())}"


def _strip_merge_tags(loader: _Loader, node, tags: dict[int, str], seen: set[int]) -> None:
    """Note each `!reset` / `!override` node in `tags` and give it its plain tag back, so it
    builds like any other value; the parent mapping then records the tag for the merge."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if node.tag in MERGE_TAGS:
        tags[id(node)] = node.tag
        node.tag = loader.resolve(type(node), node.value if isinstance(node, ScalarNode) else None, (True, False))
    if isinstance(node, SequenceNode):
        for item in node.value:
            _strip_merge_tags(loader, item, tags, seen)
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            _strip_merge_tags(loader, key, tags, seen)
            _strip_merge_tags(loader, value, tags, seen)


def read_text(path: Path) -> str:
    """The file's text, or a StackError that says plainly why it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StackError([f"stack file not found: {path}"]) from None
    except IsADirectoryError:
        raise StackError([f"{path}: is a directory, not a stack file"]) from None
    except PermissionError:
        raise StackError([f"{path}: cannot read the stack file: permission denied"]) from None
    except OSError as err:
        raise StackError([f"{path}: cannot read the stack file: {err.strerror or err}"]) from None
    except ValueError:  # a NUL byte in the name
        raise StackError([f"{str(path)!r}: invalid file name"]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise StackError([f"{path}: not a text file (invalid UTF-8 at byte {err.start})"]) from None


def parse_yaml(text: str, file: str):
    """Every document of `text` as Map/Seq/scalars, merged in order when there are several."""
    docs = []
    loader = None
    try:
        loader = _Loader(text)
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                merge_tags: dict[int, str] = {}
                _strip_merge_tags(loader, node, merge_tags, set())
                builder = _Builder(file, loader, merge_tags)
                docs.append(builder.build(node))
                if builder.problems:
                    raise StackError(sort_lines(builder.problems))
    except yaml.reader.ReaderError as err:
        # The reader reports a character offset, not a mark: count the lines ourselves.
        line = text.count("\n", 0, err.position) + 1
        col = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        char = ord(err.character) if isinstance(err.character, str) else err.character
        raise StackError([f"{file}:{line}:{col}: invalid YAML: unacceptable character #x{char:04x}: {err.reason}"]) from None
    except yaml.YAMLError as err:
        raise StackError([_yaml_error_line(file, err)]) from None
    except RecursionError:
        raise StackError([f"{file}: the YAML is nested too deeply"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return docs


def load_yaml(path: Path) -> Map:
    """A stack file as one top-level Map (several documents are merged by the caller's rules)."""
    return load_yaml_text(read_text(path), str(path))


def load_yaml_text(text: str, file: str) -> Map:
    """`load_yaml` of text already read (standard input), its marks naming `file`."""
    docs = parse_yaml(text, file)
    if not docs or all(doc is None for doc in docs):
        raise StackError([f"{file}: empty stack file; it needs at least a 'services' section"])
    for doc in docs:
        if not isinstance(doc, Map):
            mark = getattr(doc, "mark", None) or Mark(file, 1, 1)
            raise StackError([f"{mark}: the top level of a stack file must be a mapping (services:, networks:, ...)"])
    if len(docs) == 1:
        return docs[0]
    from orch.spec.merge import merge_files

    return merge_files(docs)
