"""Merging stack files (`-f a.yml -f b.yml`) and `extends`, as compose-spec 13-merge.md says.

Mappings merge key by key; sequences append; scalars are replaced. The exceptions:
`command`, `entrypoint` and `healthcheck.test` are replaced whole; `ports`, `volumes`,
`secrets`, `configs` (and, as compose-go has it, cap_add, dns, expose, links, ... see UNIQUE)
are sequences of unique entries, so an entry whose unique key (ports: host ip, target,
published, protocol; volumes, secrets, configs: target) is already there replaces it in place. Keys that are either a list or a mapping (environment, labels, depends_on, networks,
...) are made mappings first, so `[A=1]` and `{A: 2}` merge. `!reset` removes a value,
`!override` replaces it without merging.

This works on the raw `Map` / `Seq` trees, so every value keeps the mark of the file and line
it came from, which is what an error about the merged stack must name.
"""

from orch.spec import syntax
from orch.spec.yamltree import Map, Seq

REPLACED = {("command",), ("entrypoint",), ("healthcheck", "test")}
# Sequences whose entries are unique by a key (compose-go's override/uncity.go): an entry
# whose key is already there replaces it in place instead of being appended.
UNIQUE = {
    ("ports",): "ports",
    ("volumes",): "target",
    ("devices",): "target",
    ("secrets",): "target",
    ("configs",): "target",
    ("env_file",): "path",
    ("cap_add",): "value",
    ("cap_drop",): "value",
    ("dns",): "value",
    ("dns_opt",): "value",
    ("dns_search",): "value",
    ("expose",): "value",
    ("links",): "value",
    ("profiles",): "value",
    ("tmpfs",): "value",
    ("build", "tags"): "value",
}
# Keys written either `[KEY=VALUE]` or `{KEY: VALUE}` (separator), merged as mappings.
LIST_OR_DICT = {
    ("environment",): "=",
    ("labels",): "=",
    ("annotations",): "=",
    ("sysctls",): "=",
    ("build", "args"): "=",
    ("build", "labels"): "=",
    ("deploy", "labels"): "=",
}
# Keys written either as a list of names or a mapping of name -> options.
NAMES_OR_DICT = {("depends_on",), ("networks",)}
STRING_OR_LIST = {("dns",), ("dns_search",), ("tmpfs",), ("env_file",), ("expose",)}


def merge_files(trees: list[Map]) -> Map:
    """Merge whole stack files in order; later files win."""
    result = trees[0]
    for tree in trees[1:]:
        result = _merge_top(result, tree)
    return strip_reset(result)


def _merge_top(base: Map, over: Map) -> Map:
    out = _copy(base)
    for key, value in over.items():
        tag = over.tags.get(key)
        if tag == "!reset":
            out.pop(key, None)
            continue
        if key == "services" and isinstance(value, Map) and isinstance(out.get(key), Map) and tag != "!override":
            services = _copy(out[key])
            for name, service in value.items():
                if isinstance(service, Map) and isinstance(services.get(name), Map) and value.tags.get(name) != "!override":
                    _put(services, value, name, merge_service(services[name], service))
                elif value.tags.get(name) == "!reset":
                    services.pop(name, None)
                else:
                    _put(services, value, name, service)
            _put(out, over, key, services)
        elif key in out and tag != "!override":
            _put(out, over, key, _merge_value(out[key], value, ("*top*", key)))
        else:
            _put(out, over, key, value)
    return out


def merge_service(base: Map, over: Map) -> Map:
    """`over` laid on `base`: one service in two files, or a service and what it extends."""
    return _merge_map(base, over, ())


def _merge_map(base: Map, over: Map, path: tuple) -> Map:
    out = _copy(base)
    for key, value in over.items():
        tag = over.tags.get(key)
        sub = path + (key,)
        if tag == "!reset":
            out.pop(key, None)
        elif tag == "!override" or key not in out or sub in REPLACED:
            _put(out, over, key, value)
        else:
            _put(out, over, key, _merge_value(out[key], value, sub))
    return out


def _merge_value(base, over, path: tuple):
    if path == ("build",):
        base, over = _build_as_map(base), _build_as_map(over)
    elif path == ("extra_hosts",):
        return _merge_extra_hosts(base, over)
    elif len(path) == 2 and path[0] == "ulimits":
        return over  # one limit is replaced whole, as compose-go does
    if path in LIST_OR_DICT:
        base, over = _as_map(base, LIST_OR_DICT[path]), _as_map(over, LIST_OR_DICT[path])
    elif path in NAMES_OR_DICT:
        base, over = _names_as_map(base, path), _names_as_map(over, path)
    elif path in STRING_OR_LIST:
        base, over = _as_seq(base), _as_seq(over)
    if isinstance(base, Map) and isinstance(over, Map):
        return _merge_map(base, over, path)
    if isinstance(base, Seq) and isinstance(over, Seq):
        if path in UNIQUE:
            return _merge_unique(base, over, UNIQUE[path])
        if len(path) == 3 and path[0] == "networks" and path[2] in ("aliases", "link_local_ips"):
            return _merge_unique(base, over, "value")
        return _append(base, over)
    return over


def _build_as_map(value):
    return Map({"context": value}, mark=None) if isinstance(value, str) else value


def _merge_extra_hosts(base, over):
    """extra_hosts as 'host=ip' sequences, without repeating an entry (compose-go's rule)."""

    def entries(value) -> Seq:
        if isinstance(value, Map):
            out = Seq(mark=value.mark, marks=[])
            for host, ips in value.items():
                for ip in ips if isinstance(ips, list) else [ips]:
                    out.add(f"{host}={ip}", value.mark_of(host))
            return out
        return _as_seq(value) if not isinstance(value, Seq) else value

    left, right = entries(base), entries(over)
    if not isinstance(left, Seq) or not isinstance(right, Seq):
        return over
    out = Seq(left, mark=left.mark, marks=left.marks)
    for item, mark in zip(right, right.marks):
        if item not in out:
            out.add(item, mark)
    return out


def _merge_unique(base: Seq, over: Seq, key: str) -> Seq:
    out = Seq(base, mark=base.mark, marks=base.marks)
    index = {_unique_key(item, key): i for i, item in enumerate(out)}
    for item, mark in zip(over, over.marks):
        ident = _unique_key(item, key)
        if ident is not None and ident in index:
            out[index[ident]] = item
            out.marks[index[ident]] = mark
        else:
            index[ident] = len(out)
            out.add(item, mark)
    return out


def _unique_key(item, kind: str):
    """The identity of a sequence entry by its kind of key; an unreadable entry is its own
    identity (validation reports it later)."""
    try:
        if kind == "ports":
            entries = syntax.parse_ports(item) if isinstance(item, (str, int)) else [item]
            if len(entries) != 1 or not isinstance(entries[0], dict):
                return repr(item)
            e = entries[0]
            return ("port", e.get("host_ip"), str(e.get("target")), str(e.get("published")), e.get("protocol", "tcp"))
        if kind == "target":
            if isinstance(item, str):  # 'source:target[:mode]' or a bare target
                parts = item.split(":")
                return parts[1] if len(parts) > 1 else parts[0]
            if isinstance(item, dict):
                return item.get("target") or item.get("source")
        if kind == "path":
            return item.get("path") if isinstance(item, dict) else item
        if kind == "value" and isinstance(item, (str, int)):
            return str(item).split("=", 1)[0]
    except (ValueError, TypeError):
        pass
    return repr(item)


def _append(base: Seq, over: Seq) -> Seq:
    out = Seq(base, mark=base.mark, marks=base.marks)
    for item, mark in zip(over, over.marks):
        out.add(item, mark)
    return out


def _as_map(value, sep: str):
    if not isinstance(value, Seq):
        return value
    out = Map(mark=value.mark)
    for item, mark in zip(value, value.marks):
        if isinstance(item, (Map, Seq)) or item is None:
            return value  # not a KEY=VALUE list; validation will say so
        key, has_sep, rest = syntax.scalar_text(item).partition(sep)
        out.put(key, rest if has_sep else None, mark, mark)
    return out


def _names_as_map(value, path: tuple):
    if not isinstance(value, Seq):
        return value
    out = Map(mark=value.mark)
    for item, mark in zip(value, value.marks):
        if not isinstance(item, str):
            return value
        # A listed dependency means "started, required"; a listed network has no options.
        entry = Map({"condition": "service_started", "required": True}, mark=mark) if path == ("depends_on",) else None
        out.put(item, entry, mark, mark)
    return out


def _as_seq(value):
    if isinstance(value, (str, int, Map)) and not isinstance(value, bool):
        return Seq([value], mark=getattr(value, "mark", None))
    return value


def _copy(tree: Map) -> Map:
    out = Map(tree, mark=tree.mark)
    out.key_marks = dict(tree.key_marks)
    out.marks = dict(tree.marks)
    out.tags = dict(tree.tags)
    return out


def _put(out: Map, source: Map, key: str, value) -> None:
    out[key] = value
    if key in source.marks:
        out.marks[key] = source.marks[key]
    if key in source.key_marks:
        out.key_marks[key] = source.key_marks[key]
    out.tags.pop(key, None)


def strip_reset(tree):
    """Remove values tagged `!reset` that had nothing under them to reset (a single file)."""
    if isinstance(tree, Map):
        for key in [k for k, tag in tree.tags.items() if tag == "!reset"]:
            tree.pop(key, None)
        tree.tags.clear()
        for value in tree.values():
            strip_reset(value)
    elif isinstance(tree, Seq):
        for value in tree:
            strip_reset(value)
    return tree
