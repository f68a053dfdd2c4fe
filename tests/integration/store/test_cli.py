"""The image CLI end to end: `orch` processes talking to an agent on a unix socket."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from .conftest import entry, tar_bytes

pytestmark = pytest.mark.privileged

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture
def agent(tmp_path):
    env = dict(os.environ, ORCH_ROOT=str(tmp_path / "root"), ORCH_RUN=str(tmp_path / "run"), PYTHONPATH=REPO)
    env.pop("SOURCE_DATE_EPOCH", None)
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.store.image_agent"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sock = tmp_path / "run" / "orch.sock"
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the test agent did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        yield env
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


def orch(env, *args, stdin=None, ok=True):
    proc = subprocess.run([sys.executable, "-m", "orch", *args], env=env, cwd=REPO, capture_output=True, input=stdin)
    if ok:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


def test_import_images_inspect_tag_save_load_rmi(agent, tmp_path):
    (tmp_path / "rootfs.tar").write_bytes(tar_bytes(entry("etc/motd", data=b"hi")))
    image_id = orch(agent, "image", "import", "-c", 'CMD ["sh"]', str(tmp_path / "rootfs.tar"), "app:1").stdout.decode().strip()
    assert image_id.startswith("sha256:")

    lines = orch(agent, "images").stdout.decode().splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[0].startswith("REPOSITORY   TAG       IMAGE ID       CREATED")
    assert lines[1].split()[:3] == ["app", "1", image_id[7:19]]
    assert re.search(r"   (Less than a second|\d+ seconds?) ago   2B$", lines[1]), lines[1]  # docker counts the content: "hi"

    assert orch(agent, "images", "-q").stdout.decode() == image_id[7:19] + "\n"
    out = orch(agent, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.decode()
    assert out == f"app:1 {image_id[7:19]}\n"

    doc = json.loads(orch(agent, "image", "inspect", "app:1").stdout)
    assert doc[0]["Id"] == image_id and doc[0]["Config"]["Cmd"] == ["sh"]
    layers = orch(agent, "image", "inspect", "--format", "{{json .RootFS.Layers}}", "app:1").stdout.decode()
    assert json.loads(layers) == doc[0]["RootFS"]["Layers"]
    assert orch(agent, "image", "inspect", "-f", "{{.Config.Cmd}}", "app:1").stdout.decode() == "[sh]\n"

    orch(agent, "tag", "app:1", "app:2")
    orch(agent, "save", "-o", str(tmp_path / "s.tar"), "app:2")
    saved = orch(agent, "save", "--format", "oci", "app:1").stdout  # to stdout
    assert orch(agent, "rmi", "app:1").stdout.decode() == "Untagged: app:1\n"
    out = orch(agent, "image", "rm", "app:2").stdout.decode().splitlines()
    assert out[:2] == ["Untagged: app:2", f"Deleted: {image_id}"]

    assert orch(agent, "load", "-i", str(tmp_path / "s.tar")).stdout.decode() == "Loaded image: app:2\n"
    assert orch(agent, "load", stdin=saved).stdout.decode() == "Loaded image: app:1\n"
    assert json.loads(orch(agent, "image", "inspect", "app:1").stdout)[0]["Id"] == image_id


def test_errors_are_one_line(agent, tmp_path):
    p = orch(agent, "rmi", "nope", ok=False)
    assert p.returncode == 1 and p.stderr.decode() == "orch: no such image: nope; build it, pull it, or make a base with 'orch bootstrap busybox'\n"
    p = orch(agent, "image", "inspect", "nope", ok=False)
    assert p.returncode == 1 and p.stdout.decode().strip() == "[]" and p.stderr.decode().count("\n") == 1
    p = orch(agent, "image", "import", "-c", "RUN make", str(tmp_path), "x", ok=False)
    assert p.returncode == 1 and "RUN is not one of" in p.stderr.decode()
    p = orch(agent, "load", "-i", str(tmp_path / "missing.tar"), ok=False)
    assert p.returncode == 1 and p.stderr.decode().startswith("orch: no such file or directory")
    p = orch(agent, "image", "frobnicate", ok=False)
    assert p.returncode == 1 and "unknown command 'orch image frobnicate'" in p.stderr.decode()


def test_bootstrap_busybox_then_it_is_cached(agent):
    first = orch(agent, "bootstrap", "busybox").stdout.decode()
    assert first.startswith("built busybox:latest (")
    second = orch(agent, "bootstrap", "busybox").stdout.decode()
    assert second.startswith("busybox:latest is already there (") and second.endswith("use --force to build it again\n")
    assert orch(agent, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode() == "busybox:latest\n"


def test_image_history(agent, tmp_path):
    (tmp_path / "rootfs.tar").write_bytes(tar_bytes(entry("etc/motd", data=b"hi")))
    image_id = orch(agent, "image", "import", "-m", "first import", str(tmp_path / "rootfs.tar"), "app").stdout.decode().strip()
    lines = orch(agent, "image", "history", "app").stdout.decode().splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert lines[1].startswith(image_id[7:19] + "   ") and "orch image import" in lines[1] and lines[1].endswith("2B        first import")
    assert orch(agent, "image", "history", "-q", "--no-trunc", "app").stdout.decode() == image_id + "\n"
