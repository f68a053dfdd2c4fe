"""The WWW-Authenticate challenge and the Bearer token dance, against a fake token server on loopback."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from orch.errors import UserError
from orch.registry.auth import Challenge, basic_header, decode_auth, encode_auth, parse_challenge
from orch.registry.client import RegistryClient

CHALLENGES = [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
     [Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/busybox:pull"})]),
    ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
    ('basic realm=plain', [Challenge("basic", {"realm": "plain"})]),
    ('Bearer realm="r", scope="repository:a/b:pull,push"', [Challenge("bearer", {"realm": "r", "scope": "repository:a/b:pull,push"})]),
    ('Bearer realm="a\\"b"', [Challenge("bearer", {"realm": 'a"b'})]),
    ('Bearer realm="r", Basic realm="s"', [Challenge("bearer", {"realm": "r"}), Challenge("basic", {"realm": "s"})]),
    ('Negotiate', [Challenge("negotiate", {})]),
    ('', []),
]


@pytest.mark.parametrize("header, expected", CHALLENGES)
def test_parse_challenge(header, expected):
    assert parse_challenge(header) == expected


def test_auth_encoding_round_trips():
    assert decode_auth(encode_auth("u", "p:w"), "x") == ("u", "p:w")
    assert basic_header("u", "p") == "Basic " + base64.b64encode(b"u:p").decode()
    with pytest.raises(UserError, match="x: 'auth' is not base64 of 'user:password'"):
        decode_auth("bm9jb2xvbg==", "x")  # "nocolon"


class FakeRegistry(BaseHTTPRequestHandler):
    """A registry that wants Bearer tokens, and its token server, on one loopback port.

    Tokens are "tok:<scope>"; repositories under private/ need the user alice (password pw).
    """

    token_requests: list = []

    def log_message(self, *args):
        pass

    def _send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/token":
            q = parse_qs(url.query)
            auth = self.headers.get("Authorization")
            self.token_requests.append((q, auth))
            scopes = q.get("scope", [])
            if any(":private/" in s for s in scopes) and auth != basic_header("alice", "pw"):
                return self._send(401, b'{"details":"no"}')
            body = json.dumps({"token": "tok:" + " ".join(scopes), "expires_in": 300}).encode()
            return self._send(200, body, [("Content-Type", "application/json")])
        repo = url.path.split("/v2/", 1)[-1].split("/manifests/")[0]
        scope = f"repository:{repo}:pull"
        realm = f"http://{self.headers['Host']}/token"
        if not (self.headers.get("Authorization") or "").startswith(f"Bearer tok:") or scope not in self.headers["Authorization"]:
            challenge = f'Bearer realm="{realm}",service="fake",scope="{scope}"'
            return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}', [("WWW-Authenticate", challenge)])
        body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "0" * 64, "size": 2},
                           "layers": []}).encode()
        return self._send(200, body, [("Content-Type", "application/vnd.oci.image.manifest.v1+json")])


@pytest.fixture
def fake_registry():
    FakeRegistry.token_requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_anonymous_bearer_token_is_fetched_once_per_scope(fake_registry):
    with RegistryClient(fake_registry, "http") as client:
        client.get_manifest("library/busybox", "latest")
        client.get_manifest("library/busybox", "1.36")
    (query, auth), = FakeRegistry.token_requests
    assert query == {"service": ["fake"], "scope": ["repository:library/busybox:pull"]}
    assert auth is None  # anonymous
    # The first request was challenged, the second went straight through with the token.
    assert client.requests == [("GET", "/v2/library/busybox/manifests/latest")] * 2 + [("GET", "/v2/library/busybox/manifests/1.36")]


def test_bearer_token_with_credentials(fake_registry):
    with RegistryClient(fake_registry, "http", ("alice", "pw")) as client:
        media, _, _, _ = client.get_manifest("private/app", "v1")
    assert media == "application/vnd.oci.image.manifest.v1+json"
    (_, auth), = FakeRegistry.token_requests
    assert auth == basic_header("alice", "pw")


@pytest.mark.parametrize("creds, who", [(None, "anonymously"), (("alice", "wrong"), "as alice")])
def test_token_server_refusal_is_one_line(fake_registry, creds, who):
    with RegistryClient(fake_registry, "http", creds) as client:
        with pytest.raises(UserError, match=rf"registry {fake_registry}: the token server refused access {who} to repository:private/app:pull; check 'orch login {fake_registry}'"):
            client.get_manifest("private/app", "v1")
