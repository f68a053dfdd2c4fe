"""The `orch` command's launcher: Python started without `site`.

`site` (the module every Python runs at start unless -S) finds site-packages, reads .pth
files and imports os: about 2.5 ms of the ~25 ms in which `orch run` should start a
container, and `orch run` needs none of it (orch/cli/fastrun.py uses built-in modules only).
pip's console script cannot pass interpreter flags, so `scripts/setup` writes this launcher
over it:

    python -m orch.cli.launcher .venv/bin/orch

It puts orch's own directory on sys.path and calls orch.cli.main, which runs `site` itself
for every command but `run` (they need pydantic, trio, yaml from site-packages). A plain
`pip install` keeps pip's script: everything works the same, `orch run` is 2.5 ms slower.
"""

import os
import sys

TEMPLATE = """#!{python} -S
# orch's launcher (orch/cli/launcher.py): Python without `site`; orch.cli runs it when needed.
import sys
sys.path.insert(0, {root!r})
from orch.cli import main
sys.exit(main())
"""


def render(python: str, root: str) -> str:
    return TEMPLATE.format(python=python, root=root)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m orch.cli.launcher PATH (the launcher to write, e.g. .venv/bin/orch)", file=sys.stderr)
        return 2
    import orch

    root = os.path.dirname(os.path.dirname(os.path.abspath(orch.__file__)))
    path = argv[0]
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(render(sys.executable, root))
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
