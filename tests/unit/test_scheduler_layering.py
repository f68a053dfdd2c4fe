"""The scheduler's deciders are pure: no module of orch/scheduler imports trio, pyroute2,
subprocess or ctypes, directly or through the orch modules it imports (as trio's own
`_tests/test_exports.py` checks its layering). Read from the source, so the test does not
depend on what this test process happens to have imported already.

The cluster's records are the one part of orch.cluster the scheduler may use, so they import
only pydantic and the standard library.
"""

import ast
import sys
from pathlib import Path

import orch

FORBIDDEN = {"trio", "pyroute2", "subprocess", "ctypes"}
ROOT = Path(orch.__file__).parent
SCHEDULER = sorted((ROOT / "scheduler").glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if parts and candidate.is_file():
            return candidate
    return ROOT / "__init__.py" if not parts else None


def reachable_imports(path: Path) -> dict[str, Path]:
    """Every module imported from `path` and, transitively, from the orch modules it imports."""
    seen: dict[str, Path] = {}
    todo = [path]
    visited = set()
    while todo:
        current = todo.pop()
        if current in visited:
            continue
        visited.add(current)
        for name in imported_modules(current):
            seen.setdefault(name, current)
            if name.split(".")[0] == "orch" and (target := module_file(name)) is not None:
                todo.append(target)
    return seen


def test_the_scheduler_has_modules_to_check():
    assert {p.name for p in SCHEDULER} >= {
        "reconcile.py", "model.py", "restart.py", "rolling.py", "depends.py", "placement.py", "orchestrate.py",
        "clusterplan.py", "fakecluster.py", "taskview.py",
    }


def test_the_scheduler_uses_only_the_records_of_the_cluster():
    offenders = []
    for path in SCHEDULER:
        for name, where in reachable_imports(path).items():
            if name.startswith("orch.cluster") and not name.startswith("orch.cluster.records"):
                offenders.append(f"{where.relative_to(ROOT.parent)} imports {name}")
    assert not offenders, "; ".join(sorted(set(offenders)))


def test_the_records_import_only_pydantic_and_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"pydantic", "__future__"}
    names = {name.split(".")[0] for name in imported_modules(ROOT / "cluster" / "records.py")}
    assert names and names <= allowed, sorted(names - allowed)


def test_scheduler_modules_import_no_io():
    offenders = []
    for path in SCHEDULER:
        for name, where in reachable_imports(path).items():
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{where.relative_to(ROOT.parent)} imports {name}")
    assert not offenders, "; ".join(sorted(set(offenders)))


def test_the_check_sees_an_offender(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom trio import sleep\nimport orch.errors\n")
    assert {"trio", "trio.sleep", "os", "orch.errors"} <= set(reachable_imports(bad))
