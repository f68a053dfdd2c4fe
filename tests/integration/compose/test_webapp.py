"""The README's example: the Python web app with Redis and a worker, built FROM Debian with
apt-get, up with a published port; the visit count survives `down` and `up` in its volume.

The Debian base comes from the machine's test cache (tests/integration/build: one debootstrap
per machine); the builds run apt-get against the Debian mirrors, so this test takes a minute
the first time and about twenty seconds after that.
"""

import re
import shutil

import pytest

from tests.integration.build.conftest import cached_base

from .conftest import free_port

pytestmark = pytest.mark.privileged

EXAMPLE = __import__("pathlib").Path(__file__).resolve().parents[3] / "examples" / "stacks" / "webapp"


def test_webapp_counts_visits_and_keeps_them_across_down_and_up(node, tmp_path):
    import urllib.request

    node.orch("load", "-i", str(cached_base("debian")), timeout=300)
    port = free_port()
    app = tmp_path / "webapp"
    shutil.copytree(EXAMPLE, app)
    text = (app / "compose.yaml").read_text().replace('"8080:8000"', f'"127.0.0.1:{port}:8000"')
    (app / "compose.yaml").write_text(text.replace("name: webapp", "name: webapptest"))
    up = ["compose", "-f", str(app / "compose.yaml")]

    def visits() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            return int(re.search(r"Visits: (\d+)", answer.read().decode()).group(1))

    try:
        out = node.orch(*up, "up", "-d", "--wait", timeout=600).stderr
        assert "Built" in out and "Volume webapptest_redis-data" in out
        assert [visits(), visits()] == [1, 2]
        node.orch(*up, "down")
        node.orch(*up, "up", "-d", "--wait", timeout=120)
        assert visits() == 3  # Redis kept its data in the named volume
    finally:
        node.orch(*up, "down", "-v", "--rmi", "local", check=False)
    assert "webapptest" not in node.orch("ps", "-a").stdout
    assert "webapptest" not in node.orch("volume", "ls").stdout + node.orch("network", "ls").stdout
