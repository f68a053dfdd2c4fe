"""`extends`: a service built on another one, in the same file or another file.

The base service's own `extends` is resolved first (recursively, a cycle is an error), then the
service is laid on it with the same rules as merging files (orch.spec.merge). A base from
another file keeps its relative paths relative to *its* file: they are made absolute before the
merge, so `build: .` in ../common/compose.yaml still means ../common.
"""

from collections.abc import Callable
from pathlib import Path

from orch.spec import syntax
from orch.spec.errors import Problems, StackError, suggest
from orch.spec.merge import merge_service
from orch.spec.yamltree import Map, Seq

# Loads (and interpolates) another stack file's top level; the loader provides it.
FileLoader = Callable[[Path], Map]


def resolve_extends(tree: Map, file: Path, load_file: FileLoader, problems: Problems) -> None:
    """Replace every service of `tree` that has `extends` by the merged result, in place."""
    services = tree.get("services")
    if not isinstance(services, Map):
        return
    resolver = _Resolver(load_file, problems)
    for name in list(services):
        if isinstance(services[name], Map) and "extends" in services[name]:
            resolved = resolver.resolve(file, tree, name, ())
            if resolved is not None:
                services[name] = resolved


class _Resolver:
    def __init__(self, load_file: FileLoader, problems: Problems):
        self.load_file = load_file
        self.problems = problems
        self.done: dict[tuple[str, str], Map] = {}

    def resolve(self, file: Path, tree: Map, name: str, chain: tuple) -> Map | None:
        ident = (str(file), name)
        if ident in self.done:
            return self.done[ident]
        services = tree["services"]
        service = services[name]
        if not isinstance(service, Map) or "extends" not in service:
            return service
        if ident in chain:
            cycle = " -> ".join(n for _, n in chain[chain.index(ident) :]) + f" -> {name}"
            self.problems.add(service.mark_of("extends"), ("services", name, "extends"), f"extends cycle: {cycle}")
            return None
        spec = service["extends"]
        path = ("services", name, "extends")
        if isinstance(spec, str):
            spec = Map({"service": spec}, mark=service.mark_of("extends"))
        if not isinstance(spec, Map) or not isinstance(spec.get("service"), str):
            self.problems.add(service.mark_of("extends"), path, "expected a service name or a mapping with 'service' (and optionally 'file')")
            return None
        unknown = [k for k in spec if k not in ("service", "file")]
        if unknown:
            self.problems.add(spec.mark_of(unknown[0]), path, f"unknown key '{unknown[0]}' in extends{suggest(unknown[0], ['service', 'file'])}")
            return None
        base_file, base_tree = file, tree
        if spec.get("file") is not None:
            if not isinstance(spec["file"], str):
                self.problems.add(spec.mark_of("file"), path + ("file",), "expected a file path")
                return None
            base_file = Path(syntax.resolve_path(spec["file"], file.parent))
            try:
                base_tree = self.load_file(base_file)
            except StackError as err:
                self.problems.add(spec.mark_of("file"), path + ("file",), f"cannot load the extended file: {err.lines[0]}")
                return None
        base_services = base_tree.get("services")
        base_name = spec["service"]
        if not isinstance(base_services, Map) or not isinstance(base_services.get(base_name), Map):
            choices = list(base_services) if isinstance(base_services, Map) else []
            where = f" in {base_file}" if base_file != file else ""
            self.problems.add(spec.mark_of("service"), path + ("service",), f"extends unknown service '{base_name}'{where}{suggest(base_name, choices)}")
            return None
        base = self.resolve(base_file, base_tree, base_name, chain + (ident,))
        if base is None:
            return None
        if base_file != file:
            base = rebase_paths(base, base_file.parent)
        own = Map(service, mark=service.mark)
        own.marks, own.key_marks, own.tags = dict(service.marks), dict(service.key_marks), dict(service.tags)
        del own["extends"]
        merged = merge_service(base, own)
        self.done[ident] = merged
        return merged


def rebase_paths(service: Map, base_dir: Path) -> Map:
    """A copy of `service` whose relative host paths are absolute against `base_dir`."""
    out = Map(service, mark=service.mark)
    out.marks, out.key_marks, out.tags = dict(service.marks), dict(service.key_marks), dict(service.tags)
    build = out.get("build")
    if isinstance(build, str) and "://" not in build:
        out["build"] = syntax.resolve_path(build, base_dir)
    elif isinstance(build, Map) and isinstance(build.get("context", "."), str) and "://" not in build.get("context", "."):
        new = Map(build, mark=build.mark)
        new.marks, new.key_marks = dict(build.marks), dict(build.key_marks)
        new["context"] = syntax.resolve_path(build.get("context", "."), base_dir)
        out["build"] = new
    env_file = out.get("env_file")
    if isinstance(env_file, str):
        out["env_file"] = syntax.resolve_path(env_file, base_dir)
    elif isinstance(env_file, Seq):
        items = Seq(mark=env_file.mark, marks=[])
        for item, mark in zip(env_file, env_file.marks):
            if isinstance(item, str):
                item = syntax.resolve_path(item, base_dir)
            elif isinstance(item, Map) and isinstance(item.get("path"), str):
                item = Map({**item, "path": syntax.resolve_path(item["path"], base_dir)}, mark=item.mark)
            items.add(item, mark)
        out["env_file"] = items
    volumes = out.get("volumes")
    if isinstance(volumes, Seq):
        items = Seq(mark=volumes.mark, marks=[])
        for item, mark in zip(volumes, volumes.marks):
            if isinstance(item, str) and syntax.is_path(item.split(":", 1)[0]) and ":" in item:
                source, rest = item.split(":", 1)
                item = f"{syntax.resolve_path(source, base_dir)}:{rest}"
            elif isinstance(item, Map) and item.get("type") == "bind" and isinstance(item.get("source"), str):
                item = Map({**item, "source": syntax.resolve_path(item["source"], base_dir)}, mark=item.mark)
            items.add(item, mark)
        out["volumes"] = items
    return out
