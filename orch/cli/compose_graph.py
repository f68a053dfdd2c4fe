"""`orch compose graph`: the stack's dependency graph as Mermaid or DOT, or as a picture.

    orch compose graph [-f FILE]... [--profile P] [--env-file F] [-p NAME]
                       [--format mermaid|dot] [-o FILE.svg|FILE.png|FILE.dot|FILE.mmd]

Without `-o` the graph is printed in `--format` (mermaid by default). With `-o` the format
comes from the file's suffix; SVG and PNG are drawn by Graphviz's `dot` program.
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from orch.api.args import Parser
from orch.errors import SystemFailure, UserError

FORMATS = ("mermaid", "dot")
SUFFIXES = {".mmd": "mermaid", ".mermaid": "mermaid", ".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png"}


def build_parser(prog: str) -> argparse.ArgumentParser:
    from orch.cli.compose import add_common_options

    parser = Parser(prog=prog, description="Show the services' dependency graph.")
    add_common_options(parser)
    parser.add_argument("--format", choices=FORMATS, default="mermaid", help="text format to print (default mermaid)")
    parser.add_argument("-o", "--output", help="write to FILE.svg, FILE.png, FILE.dot or FILE.mmd instead of printing")
    return parser


def main(prog: str, argv: list[str]) -> int:
    options = build_parser(prog).parse_args(argv)
    from orch.scheduler.graph import compute_graph

    graph = compute_graph(load_services(options))
    if options.output:
        write_graph(graph, Path(options.output))
    else:
        sys.stdout.write(render(graph, options.format))
    return 0


def load_services(options: argparse.Namespace):
    """The normalized services of the project that the options name (orch.spec loads it)."""
    from orch.cli import compose

    project = compose.load_from_options(options)
    return project.services


def render(graph, fmt: str) -> str:
    from orch.scheduler.graph import render_dot, render_mermaid

    if fmt == "mermaid":
        return render_mermaid(graph)
    if fmt == "dot":
        return render_dot(graph)
    raise UserError(f"unknown graph format '{fmt}'; use one of: {', '.join(FORMATS)}")


def format_for(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"cannot tell the graph format of '{path}' from its suffix; use .svg, .png, .dot or .mmd")
    return fmt


def write_graph(graph, path: Path, fmt: str | None = None) -> None:
    """Write `graph` to `path` as mermaid, dot, svg or png (from the suffix unless `fmt`)."""
    fmt = fmt or format_for(path)
    if fmt in FORMATS:
        _write_atomically(path, render(graph, fmt).encode())
        return
    if fmt not in ("svg", "png"):
        raise UserError(f"unknown graph format '{fmt}'; use one of: mermaid, dot, svg, png")
    dot = shutil.which("dot")
    if dot is None:
        raise SystemFailure(f"cannot draw '{path}': Graphviz's 'dot' program is not installed (apt-get install graphviz), or write a .dot or .mmd file")
    proc = subprocess.run([dot, f"-T{fmt}"], input=render(graph, "dot").encode(), capture_output=True)
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise SystemFailure(f"dot -T{fmt} failed for '{path}': {detail[-1] if detail else f'exit status {proc.returncode}'}")
    _write_atomically(path, proc.stdout)


def _write_atomically(path: Path, data: bytes) -> None:
    # A half-written picture is worse than none: write beside it, then rename.
    from orch.atomic import write_atomic

    try:
        write_atomic(path, data, durable=False, mode=0o644)
    except OSError as err:
        raise SystemFailure(f"cannot write graph to '{path}': {err.strerror}") from None
