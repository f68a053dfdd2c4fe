"""docker.sock as a door: root's only, bounded as orch.sock is, BuildKit refused in words that
say what to do, dockerd's error codes, and versions negotiated as dockerd does."""

import json
import os
import socket
import subprocess

import pytest

pytestmark = pytest.mark.privileged


def sock_path(engine) -> str:
    return engine.env["DOCKER_HOST"].removeprefix("unix://")


def request(engine, method: str, path: str, body: bytes = b"", headers: str = "") -> tuple[int, bytes]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock_path(engine))
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{headers}Connection: close\r\n\r\n".encode()
                  + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


def test_the_socket_is_roots_alone(orch_engine):
    path = sock_path(orch_engine)
    assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(path).st_uid == 0
    probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    print('refused')\nelse:\n    print('connected')\n")
    # The machine's python3: the test's own lives under /root, which nobody may read.
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", probe, path],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "refused", out.stderr


def test_dockerds_error_codes_and_words(orch_engine, dockerd_engine):
    for engine in (orch_engine, dockerd_engine):
        code, body = request(engine, "GET", "/v1.41/containers/no-such-thing/json")
        assert code == 404 and json.loads(body)["message"].startswith("No such container: no-such-thing"), engine.name
        code, body = request(engine, "GET", "/v1.41/images/no-such-image:1/json")
        assert code == 404 and "No such image: no-such-image:1" in json.loads(body)["message"], engine.name
        code, body = request(engine, "POST", "/v1.41/containers/create?name=dup", b'{"Image": "busybox"}',
                             "Content-Type: application/json\r\n")
        assert code == 201, (engine.name, body)
        code, body = request(engine, "POST", "/v1.41/containers/create?name=dup", b'{"Image": "busybox"}',
                             "Content-Type: application/json\r\n")
        assert code == 409 and "already in use" in json.loads(body)["message"], engine.name
        code, body = request(engine, "POST", "/v1.41/containers/dup/kill")
        assert code == 409, (engine.name, body)  # not running
        assert request(engine, "DELETE", "/v1.41/containers/dup")[0] == 204
        code, body = request(engine, "POST", "/v1.41/containers/create", b'{"Image": "busybox", "HostConfig": {"Memory": 1}}',
                             "Content-Type: application/json\r\n")
        assert code == 400, (engine.name, body)


def test_a_pull_that_fails_before_its_progress_is_an_http_error_as_dockerds(orch_engine, dockerd_engine):
    """docker-py's images.pull reads the status alone: a pull refused in the stream of a 200
    would pass, and a stale local image be used."""
    codes = {}
    for engine in (orch_engine, dockerd_engine):
        with socket.socket() as s:  # a port on loopback where no registry listens
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        code, body = request(engine, "POST", f"/v1.41/images/create?fromImage=127.0.0.1:{port}/nothing&tag=1")
        assert f"127.0.0.1:{port}" in json.loads(body)["message"], (engine.name, body)
        codes[engine.name] = code
    # dockerd says 500 (its errdefs.System); orch's kind for a peer that does not answer is 503
    assert codes["dockerd"] == 500 and codes["orch"] == 503, codes


def test_versions_are_negotiated_as_dockerds(orch_engine):
    code, _ = request(orch_engine, "GET", "/_ping")
    assert code == 200
    version = json.loads(request(orch_engine, "GET", "/version")[1])
    assert (version["ApiVersion"], version["MinAPIVersion"]) == ("1.47", "1.24")
    assert request(orch_engine, "GET", "/v1.41/version")[0] == 200 and request(orch_engine, "GET", "/v1.24/version")[0] == 200
    code, body = request(orch_engine, "GET", "/v1.99/version")
    assert code == 400 and "too new" in json.loads(body)["message"]
    code, body = request(orch_engine, "GET", "/v1.12/version")
    assert code == 400 and "too old" in json.loads(body)["message"]
    code, body = request(orch_engine, "GET", "/v1.41/swarm/unlockkey")
    assert code == 501 and "has no GET /swarm/unlockkey" in json.loads(body)["message"]


def test_buildkit_is_refused_so_the_client_can_fall_back(orch_engine):
    for path in ("/v1.41/build?version=2", "/v1.41/session"):
        code, body = request(orch_engine, "POST", path)
        message = json.loads(body)["message"]
        assert code == 400 and "DOCKER_BUILDKIT=0" in message and "classic builder" in message, (path, message)


def test_bodies_are_bounded(orch_engine):
    from orch.node.agent import limits

    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock_path(orch_engine))
        s.sendall(b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (limits.MAX_BODY + 1))
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")
    # An archive route takes more than a JSON body, streamed to a file: a load of 20 MiB of
    # zeros is read to its end and refused for what it is, not for its size.
    code, body = request(orch_engine, "POST", "/v1.41/images/load", b"\0" * (20 << 20), "Content-Type: application/x-tar\r\n")
    assert code == 200 and b"errorDetail" in body


def test_an_archive_that_stops_coming_is_408(orch_engine):
    """An archive route streams its body to a file with no size bound short of MAX_ARCHIVE: a
    client that announces a big one and stops sending holds the connection BODY_IDLE seconds,
    not forever (a slow-body attack), and what it sent is removed."""
    from orch.node.agent import limits

    tmp = os.path.join(orch_engine.env["ORCH_ROOT"], "tmp")
    before = set(os.listdir(tmp)) if os.path.isdir(tmp) else set()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(limits.BODY_IDLE + 30)
        s.connect(sock_path(orch_engine))
        s.sendall(b"POST /v1.41/images/load HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
                  b"Content-Length: %d\r\n\r\n" % (1 << 30) + b"\0" * 65536)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 408") and b"stopped coming" in data, data[:300]
    assert b"\r\nconnection: close\r\n" in data.lower(), data[:300]  # the rest of the body is never read
    after = set(os.listdir(tmp)) if os.path.isdir(tmp) else set()
    assert after <= before, after - before


def test_a_hijacked_connection_of_a_missing_container_is_a_plain_404(orch_engine):
    code, body = request(orch_engine, "POST", "/v1.41/containers/nope/attach?stream=1&stdout=1", headers="Upgrade: tcp\r\n")
    assert code == 404
    code, body = request(orch_engine, "POST", "/v1.41/exec/nope/start", b"{}", "Upgrade: tcp\r\n")
    assert code == 404 and json.loads(body)["message"] == "No such exec instance: nope"
