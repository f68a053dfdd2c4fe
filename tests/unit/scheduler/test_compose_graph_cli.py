"""`orch compose graph` output files: text formats, and SVG/PNG through Graphviz's dot."""

from dataclasses import dataclass, field

import pytest

from orch.cli import compose_graph
from orch.errors import SystemFailure, UserError
from orch.scheduler.graph import compute_graph, render_dot, render_mermaid


@dataclass
class Svc:
    depends_on: dict = field(default_factory=dict)
    links: list = field(default_factory=list)
    network_mode: str | None = None
    volumes_from: list = field(default_factory=list)


GRAPH = compute_graph({"web": Svc(links=["db"]), "db": Svc()})


@pytest.mark.parametrize("suffix, render", [(".mmd", render_mermaid), (".dot", render_dot), (".gv", render_dot)])
def test_text_files(tmp_path, suffix, render):
    path = tmp_path / f"graph{suffix}"
    compose_graph.write_graph(GRAPH, path)
    assert path.read_text() == render(GRAPH)


needs_dot = pytest.mark.tools("dot", package="graphviz")


@needs_dot
def test_svg(tmp_path):
    path = tmp_path / "graph.svg"
    compose_graph.write_graph(GRAPH, path)
    svg = path.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "<title>web&#45;&gt;db</title>" in svg  # the edge made it into the picture
    assert [p.name for p in tmp_path.iterdir()] == ["graph.svg"]  # no temporary file left


@needs_dot
def test_png(tmp_path):
    path = tmp_path / "graph.png"
    compose_graph.write_graph(GRAPH, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_dot_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no dot
    with pytest.raises(SystemFailure) as err:
        compose_graph.write_graph(GRAPH, tmp_path / "graph.svg")
    assert "Graphviz's 'dot' program is not installed (apt-get install graphviz)" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "graph.svg").exists()


def test_unknown_suffix(tmp_path):
    with pytest.raises(UserError) as err:
        compose_graph.write_graph(GRAPH, tmp_path / "graph.jpg")
    assert str(err.value) == f"cannot tell the graph format of '{tmp_path / 'graph.jpg'}' from its suffix; use .svg, .png, .dot or .mmd"


def test_main_prints_the_chosen_format(monkeypatch, capsys):
    # The loader is orch.spec's (engineer A's); here a stand-in hands over the services so
    # that the command's own part (options, rendering, output) is what is tested.
    monkeypatch.setattr(compose_graph, "load_services", lambda options: {"web": Svc(links=["db"]), "db": Svc()})
    assert compose_graph.main("orch compose graph", ["--format", "dot"]) == 0
    assert capsys.readouterr().out == render_dot(GRAPH)
    assert compose_graph.main("orch compose graph", []) == 0
    assert capsys.readouterr().out == render_mermaid(GRAPH)
