"""Which package may import which, and which modules stay pure: the rules of ARCHITECTURE.md
("Packages and arrows"), checked on every module of orch as its source is written.

Every `import` counts, also one inside a function: a function-local import is how a module
defers a cost, never a way around the rules (six cycles once ran through them, such as
agent.runsock -> cli.container -> cli.system -> agent.app). The source is read with `ast`, so
the check does not depend on what this test process happened to import already (trio's own
`_tests/test_exports.py` checks its layering the same way).

This one file replaces the purity checks that six test files once wrote three ways.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import orch

ROOT = Path(orch.__file__).parent

# A module belongs to the first of these prefixes it starts with (longest first): the units of
# the table. orch's top-level modules are units of their own.
UNITS = ("node.agent.__main__", "node.agent", "node.runtime", "node", "api", "spec", "scheduler", "compose", "cli", "net", "registry",
         "build", "cluster", "dockerapi", "errors", "paths", "atomic", "client", "__main__", "__init__")

# The base: errors, where orch's files are, writing a file atomically, and orch's version. Any
# unit may import these; they import nothing of orch.
BASE = {"errors", "paths", "atomic", "__init__"}

# unit -> what else it may import: other units, or single modules of a unit
# ("node.runtime.security"). A unit may always import itself; the standard library and
# third-party libraries are not listed here (purity below says where the effectful ones may
# not go). ARCHITECTURE.md draws the same table.
ALLOWED: dict[str, set[str]] = {
    **{unit: set() for unit in BASE},
    "node": set(),
    "client": set(),
    "spec": set(),
    # The stack's values (desired state is made from them); and the cluster's records (tasks,
    # services, nodes), values the cluster orchestrator decides on, a module that imports only
    # pydantic and the standard library (BORROWED below).
    "scheduler": {"spec", "cluster.records"},
    "net": set(),
    "node.runtime": set(),
    # The node's API: request models and the flags -> request code of run/create, which the
    # CLI and the agent share. It borrows the runtime's rules for the same fields.
    "api": {"node.runtime.security", "node.runtime.reference"},
    "registry": {"node.runtime"},
    "build": {"node.runtime"},
    "node.agent": {"api", "scheduler", "node.runtime", "net", "registry", "build", "cluster"},
    # The Docker Engine API (docker.sock): a door onto the agent's own handlers and operations,
    # in the agent's process. It speaks the supervisor's protocol for attached streams and
    # reads image configs and references as the agent does; `/auth` checks a login as the CLI's
    # `login` does.
    "dockerapi": {"api", "node.agent", "node.runtime.superproto", "node.runtime.imageconfig", "node.runtime.reference",
                  "registry.names", "registry.client"},
    # The agent's program: the node's own API and the doors beside it (docker.sock). The one
    # module of the agent that may import orch.dockerapi, which imports the agent.
    "node.agent.__main__": {"node.agent", "dockerapi"},
    # Clients of the agent: they reach a node only through its API (orch.client, run.sock).
    # compose watch's ignore rules are docker's .dockerignore patterns (build.dockerignore, BORROWED).
    "compose": {"api", "client", "spec", "scheduler", "node.runtime.security", "build.dockerignore"},
    # The cluster: its worker pulls a task's image with the node's registry client.
    "cluster": {"api", "client", "spec", "scheduler", "registry"},
    "cli": {"api", "client", "spec", "scheduler", "compose", "node.runtime.reference", "node.runtime.tarstream",
            # the user's side of a registry: their credentials, `login`'s check, progress bars
            "registry.credentials", "registry.names", "registry.auth", "registry.client", "registry.progress",
            # `stack deploy` reads the stack files on the user's side, as docker's CLI does
            "cluster.stackspec", "cluster.dockerswarm"},
    "__main__": {"cli"},
}

# Modules another package takes one by one: they import nothing of orch but the base (so no
# cycle can run through them) and no library but these and the standard library.
BORROWED: dict[str, set[str]] = {
    "orch.cluster.records": {"pydantic"},
    "orch.build.dockerignore": set(),
}

# Pure modules (values and deciders): nothing they import, directly or through other orch
# modules, function-local imports included, may be one of these libraries.
EFFECTFUL = {"trio", "pyroute2", "subprocess", "ctypes"}
PURE: dict[str, set[str]] = {
    "orch.spec": EFFECTFUL | {"httpx"},
    "orch.scheduler": EFFECTFUL,
    "orch.api.runflags": EFFECTFUL | {"socket"},
    "orch.api.netflags": EFFECTFUL | {"socket"},
    "orch.api.securityflags": EFFECTFUL | {"socket"},
    "orch.api.supervisionflags": EFFECTFUL | {"socket"},
    "orch.api.models": EFFECTFUL | {"socket"},
    "orch.api.times": EFFECTFUL | {"socket"},
    "orch.net.ipam": EFFECTFUL | {"socket", "threading"},
    "orch.net.files": EFFECTFUL | {"socket", "threading"},
    "orch.net.ports": EFFECTFUL | {"socket", "threading"},
    "orch.net.names": EFFECTFUL | {"socket", "threading"},
    "orch.net.model": EFFECTFUL | {"socket", "threading"},
    "orch.net.overlay": EFFECTFUL | {"socket", "threading"},
    "orch.build.cache": EFFECTFUL,
    "orch.build.steps": EFFECTFUL,
    "orch.registry.manifest": EFFECTFUL | {"httpx"},
    "orch.registry.names": EFFECTFUL | {"httpx"},
    "orch.node.runtime.lifecycle": EFFECTFUL,
    "orch.node.runtime.config": EFFECTFUL,
    "orch.node.runtime.users": EFFECTFUL,
    "orch.node.runtime.reference": EFFECTFUL,
    "orch.node.runtime.security": EFFECTFUL,
    "orch.node.agent.netspec": EFFECTFUL,
    "orch.node.agent.mountspec": EFFECTFUL,
    "orch.node.agent.securityspec": EFFECTFUL,
    "orch.node.agent.views": EFFECTFUL,
    "orch.dockerapi.createbody": EFFECTFUL | {"socket"},
    "orch.dockerapi.inspectview": EFFECTFUL | {"socket"},
    "orch.dockerapi.versions": EFFECTFUL | {"socket"},
}

# Cheap to import: what these modules import at module level (not inside functions), and so
# on through orch's modules, must not load these libraries (`import orch.spec` stays fast).
LAZY: dict[str, set[str]] = {
    "orch.spec": {"pydantic", "yaml"},
    "orch.cli": {"pydantic", "yaml", "trio", "httpx"},
    "orch.registry.auth": EFFECTFUL | {"httpx"},  # its token requests import httpx when they run
    "orch.cli.fastrun": {"argparse", "json", "socket", "re", "enum", "pathlib"},
}


# -- reading the source ----------------------------------------------------------------------------
def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(path: Path, *, top_level_only: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) for every import in `path`; `from a import b` counts as a.b
    when a.b is a module of orch, else as a."""
    tree = ast.parse(path.read_text(), filename=str(path))
    inside = path.is_relative_to(ROOT)
    package = "" if not inside else module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.append((_submodule(f"{base}.{alias.name}") or base, node.lineno))
    return found


def _submodule(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "orch":
        return None
    target = ROOT.joinpath(*parts[1:])
    return name if target.with_suffix(".py").is_file() or (target / "__init__.py").is_file() else None


def unit_of(module: str) -> str | None:
    if module == "orch":
        return "__init__"
    if not module.startswith("orch."):
        return None
    rest = module.removeprefix("orch.")
    for unit in UNITS:
        if rest == unit or rest.startswith(unit + "."):
            return unit
    return rest.split(".")[0]


def allowed(source: str, target: str) -> bool:
    src, dst = unit_of(source), unit_of(target)
    if dst is None or src == dst or (dst in BASE and src not in BASE):
        return True
    rest = target.removeprefix("orch.")
    rules = ALLOWED.get(src, set())
    return dst in rules or any(rest == r or rest.startswith(r + ".") for r in rules if r not in UNITS)


def file_of(module: str) -> Path | None:
    parts = module.split(".")[1:]
    target = ROOT.joinpath(*parts)
    for candidate in (target.with_suffix(".py"), target / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reachable(module: str, *, top_level_only: bool = False) -> dict[str, str]:
    """Every module imported by `module` and, transitively, by the orch modules it imports:
    {imported: the orch module that imports it}. A package's own imports count for its
    submodules, as Python runs a package's __init__ first."""
    seen: dict[str, str] = {}
    todo, visited = [module], set()
    while todo:
        current = todo.pop()
        if current in visited:
            continue
        visited.add(current)
        path = file_of(current)
        if path is None:
            continue
        parents = [".".join(current.split(".")[:i]) for i in range(2, len(current.split(".")))]
        todo += [p for p in parents if p not in visited]
        for name, _line in imports_of(path, top_level_only=top_level_only):
            seen.setdefault(name, current)
            if name.startswith("orch.") or name == "orch":
                todo.append(name)
    return seen


def expand(prefix: str) -> list[str]:
    return [m for m in all_modules() if m == prefix or m.startswith(prefix + ".")]


# -- the rules --------------------------------------------------------------------------------------
def test_every_import_follows_the_table():
    offenders = []
    for module, path in all_modules().items():
        for name, line in imports_of(path):
            if not allowed(module, name):
                offenders.append(f"{path.relative_to(ROOT.parent)}:{line}: {unit_of(module)} may not import {name}")
    offenders = list(dict.fromkeys(offenders))
    assert not offenders, "imports against ARCHITECTURE.md's table:\n" + "\n".join(offenders)


def test_every_unit_is_in_the_table():
    units = {unit_of(m) for m in all_modules()}
    assert units <= set(ALLOWED), f"add {sorted(units - set(ALLOWED))} to the table (here and in ARCHITECTURE.md)"


def test_the_table_has_no_cycle():
    """Between units; a rule that names a single module adds no edge, as long as that module
    does not lead back to the unit that takes it (checked here too)."""
    graph = {u: {r for r in rules if r in UNITS} for u, rules in ALLOWED.items()}
    for unit, rules in ALLOWED.items():
        for r in rules - set(UNITS):
            back = [m for m in reachable("orch." + r) if unit_of(m) == unit]
            assert not back, f"{unit} may import orch.{r}, which leads back to {unit} ({back})"
    state: dict[str, str] = {}

    def visit(unit: str, path: list[str]) -> None:
        if state.get(unit) == "done":
            return
        assert state.get(unit) != "open", "the table has a cycle: " + " -> ".join(path + [unit])
        state[unit] = "open"
        for nxt in graph.get(unit, ()):
            visit(nxt, path + [unit])
        state[unit] = "done"

    for unit in graph:
        visit(unit, [])


@pytest.mark.parametrize("module", sorted(BORROWED))
def test_borrowed_modules_import_only_the_standard_library_and_what_they_name(module):
    allowed_names = set(sys.stdlib_module_names) | BORROWED[module] | {"__future__"}
    names = {name for name, _ in imports_of(file_of(module))}
    assert names, f"{module} names no module of orch"
    outside = sorted(n for n in names if n.split(".")[0] not in allowed_names and not (unit_of(n) in BASE))
    assert not outside, f"{module} imports {outside}"


@pytest.mark.parametrize("prefix", sorted(PURE))
def test_pure_modules_reach_no_effectful_library(prefix):
    modules = expand(prefix)
    assert modules, f"{prefix} names no module of orch"
    offenders = []
    for module in modules:
        for name, where in reachable(module).items():
            if name.split(".")[0] in PURE[prefix]:
                offenders.append(f"{module}: {where} imports {name}")
    assert not offenders, "; ".join(sorted(set(offenders)))


@pytest.mark.parametrize("module", sorted(LAZY))
def test_cheap_modules_load_no_heavy_library_at_import(module):
    offenders = {f"{where} imports {name}" for name, where in reachable(module, top_level_only=True).items()
                 if name.split(".")[0] in LAZY[module]}
    assert not offenders, "; ".join(sorted(offenders))


# -- the check itself ---------------------------------------------------------------------------------
def test_the_check_sees_imports_inside_functions(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\ndef f():\n    from trio import sleep\n    import orch.errors\n")
    names = {name for name, _ in imports_of(bad)}
    assert {"os", "trio", "orch.errors"} <= names
    assert {name for name, _ in imports_of(bad, top_level_only=True)} == {"os"}


def test_the_table_refuses_what_it_should():
    assert not allowed("orch.node.agent.runsock", "orch.cli.container")
    assert not allowed("orch.cli.container", "orch.node.runtime.superproto")
    assert not allowed("orch.compose.observe", "orch.node.agent.views")
    assert allowed("orch.cli.build", "orch.node.runtime.reference")
    assert allowed("orch.node.agent.node", "orch.node.runtime.superproto")
    assert unit_of("orch.node.agent.app") == "node.agent" and unit_of("orch.errors") == "errors"
    assert not allowed("orch.node.agent.app", "orch.dockerapi.door")  # only the agent's program composes the doors
    assert allowed("orch.node.agent.__main__", "orch.dockerapi.door")
    assert not allowed("orch.dockerapi.images", "orch.cli.image")
