"""A real registry for the tests: Debian's docker-registry (the CNCF distribution), started
on a free loopback port with its storage in a temporary directory, and stopped at the end.

`registry_server(auth=True)` adds htpasswd Basic auth (bcrypt, made with apache2-utils'
htpasswd). Tests skip with the package to install when the binaries are missing.
"""

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orch.node.runtime.images import ImageStore, canonical_json

USER, PASSWORD = "orch", "s3cret-pass"


@dataclass
class Registry:
    host: str  # 127.0.0.1:<port>
    storage: Path
    auth: bool

    def blob_data_path(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)  # polling a starting server: the only wait
    raise RuntimeError(f"docker-registry did not answer on {url}: {log.read_text()[-2000:]}")


@pytest.fixture
def registry_server(tmp_path):
    if not shutil.which("docker-registry"):
        pytest.fail("missing docker-registry: run scripts/setup (apt-get install docker-registry)", pytrace=False)
    procs = []

    def start(auth: bool = False) -> Registry:
        base = tmp_path / f"registry{len(procs)}"
        storage = base / "storage"
        storage.mkdir(parents=True)
        port = _free_port()
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}, "cache": {"blobdescriptor": ""}},
            "http": {"addr": f"127.0.0.1:{port}"},
        }
        if auth:
            if not shutil.which("htpasswd"):
                pytest.fail("missing htpasswd: run scripts/setup (apt-get install apache2-utils)", pytrace=False)
            htpasswd = base / "htpasswd"
            out = subprocess.run(["htpasswd", "-Bbn", "-C", "4", USER, PASSWORD], check=True, capture_output=True, text=True).stdout
            htpasswd.write_text(out)
            config["auth"] = {"htpasswd": {"realm": "orch-test", "path": str(htpasswd)}}
        cfg = base / "config.yml"
        cfg.write_text(json.dumps(config))  # JSON is YAML
        log = base / "registry.log"
        with open(log, "wb") as logf:
            proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=logf, stderr=subprocess.STDOUT)
        procs.append(proc)
        _wait_ready(proc, f"http://127.0.0.1:{port}/v2/", log)
        return Registry(f"127.0.0.1:{port}", storage, auth)

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def store_factory(tmp_path):
    made = []

    def make(name: str = "node") -> ImageStore:
        store = ImageStore(tmp_path / name)
        made.append(store)
        return store

    return make


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer tar, reproducible (mtime 0, root-owned)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755 if name.startswith("bin/") else 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_image(store: ImageStore, ref: str | None, layers: list[dict[str, bytes]], cmd=("/bin/app",)):
    """An image of uncompressed layers, as a build or an import makes them."""
    blobs, diff_ids = [], []
    for files in layers:
        data = layer_tar(files)
        digest = store.content.write_bytes(data)
        blobs.append((digest, "application/vnd.oci.image.layer.v1.tar"))
        diff_ids.append(digest)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": list(cmd), "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(layers))],
    }
    image, _ = store.add_image(canonical_json(config), blobs, [ref] if ref else [])
    return image


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def _auth_file(tmp_path, monkeypatch):
    """Credentials go to a temporary auth.json, never the user's."""
    monkeypatch.setenv("ORCH_AUTH_FILE", str(tmp_path / "auth.json"))
    monkeypatch.delenv("ORCH_INSECURE_REGISTRIES", raising=False)
    os.environ.pop("DOCKER_CONFIG", None)
