"""docker-compose v1 (Debian's 1.29, a docker-py client) brings the README's example stack up
and down through orch's docker.sock: it builds both images FROM debian:bookworm (the test
cache's debootstrap, loaded first), makes the network and the volume, waits for Redis to be
healthy, and the web app counts visits. The builds run apt-get against the Debian mirrors, so
this test takes a minute or two.

compose v1 refuses the file's top-level `name:` (it predates it), so the copy leaves it out and
names the project with -p.
"""

import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.build.conftest import cached_base

from .test_docker_cli import free_port

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "stacks" / "webapp"


def test_compose_v1_brings_the_webapp_up_and_down(orch_engine, tmp_path):
    if not shutil.which("docker-compose"):
        pytest.fail("missing docker-compose: run scripts/setup (apt-get install docker-compose)", pytrace=False)
    orch_engine.docker("load", "-i", str(cached_base("debian")), timeout=300)
    app = tmp_path / "webapp"
    shutil.copytree(EXAMPLE, app)
    port = free_port()
    text = (app / "compose.yaml").read_text()
    assert "\nname: webapp\n" in text
    (app / "compose.yaml").write_text(text.replace("\nname: webapp\n", "\n").replace('"8080:8000"', f'"127.0.0.1:{port}:8000"'))
    project = "webapp" + os.urandom(2).hex()
    compose = ["docker-compose", "-p", project, "-f", str(app / "compose.yaml")]

    def run(*args, timeout=120):
        done = subprocess.run(compose + list(args), env=orch_engine.env, capture_output=True, text=True, timeout=timeout, cwd=app)
        assert done.returncode == 0, f"docker-compose {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done

    def visits() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            return int(re.search(r"Visits: (\d+)", answer.read().decode()).group(1))

    try:
        up = run("up", "-d", timeout=900)
        assert "Successfully tagged webapp-web:latest" in up.stdout + up.stderr
        assert f"Creating {project}_web_1" in up.stderr and f"Creating {project}_redis_1" in up.stderr
        deadline = time.monotonic() + 60
        while True:
            try:
                first = visits()
                break
            except OSError as err:
                if time.monotonic() > deadline:
                    ps = subprocess.run(compose + ["ps"], env=orch_engine.env, capture_output=True, text=True, cwd=app).stdout
                    logs = subprocess.run(compose + ["logs", "--tail", "20"], env=orch_engine.env, capture_output=True, text=True,
                                          cwd=app).stdout
                    raise AssertionError(f"the web app does not answer on {port}: {err}\n{ps}\n{logs}") from None
                time.sleep(0.2)  # the web app starting: polling its port is the only wait
        assert visits() == first + 1
        ps = run("ps").stdout
        assert re.search(rf"{project}_redis_1 .*Up \(healthy\)", ps) and re.search(rf"{project}_web_1 .*Up", ps), ps
        run("down", "-v", "--rmi", "local", timeout=300)
    finally:
        subprocess.run(compose + ["down", "-v", "--rmi", "local"], env=orch_engine.env, capture_output=True, timeout=300, cwd=app)
    assert project not in orch_engine.docker("ps", "-a", "--format", "{{.Names}}").stdout
    assert project not in orch_engine.docker("network", "ls", "--format", "{{.Name}}").stdout
    assert project not in orch_engine.docker("volume", "ls", "--format", "{{.Name}}").stdout
