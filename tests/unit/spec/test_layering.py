"""orch.spec is a pure front end: cheap to import, and no runtime libraries even after a load."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[3]


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()


def test_importing_orch_spec_loads_neither_pydantic_nor_yaml():
    assert run("import sys, orch.spec; print(sorted({'pydantic', 'yaml'} & set(sys.modules)))") == "[]"


def test_loading_a_stack_touches_no_runtime_library():
    code = (
        "import sys; from pathlib import Path; import orch.spec;"
        "orch.spec.load_project([Path('examples/stacks/hello/compose.yaml')], environ={});"
        "print(sorted({'trio', 'pyroute2', 'subprocess', 'ctypes', 'httpx'} & set(sys.modules)))"
    )
    assert run(code) == "[]"
