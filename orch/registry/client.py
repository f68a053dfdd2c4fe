"""An OCI distribution API client for one registry (distribution's docs/spec/api.md, the OCI
distribution-spec): manifests, blobs, blob uploads, with the authentication of auth.py.

Every request goes through `_send`, which adds the Authorization header the Authenticator
knows for the request's scope and, on a 401, answers the challenge once and repeats the
request. Blob downloads stream into a content-store writer that hashes while it writes; the
writer commits only when the digest matches (nothing partial or wrong ever becomes visible).
Uploads are chunked (PATCH with Content-Range) and resumable: after a failed chunk the client
asks the registry how much it has (GET on the upload URL, the `Range` header) and goes on
from there.

`requests` counts what was sent, as (method, path) pairs, so tests can prove that blobs the
registry already has are not uploaded again.
"""

import hashlib
import threading
from typing import BinaryIO, Callable

import httpx

from orch.errors import InvalidArgument, NotFound, SystemFailure, Unavailable, UserError
from orch.registry import manifest as mf
from orch.registry.auth import Authenticator, scope_for
from orch.registry.names import DOCKER_HUB_API

CHUNK = 8 << 20  # upload chunk size: bounds memory and the bytes re-sent after a failure
READ = 1 << 16
RETRIES = 3

Progress = Callable[[int], None]


def _noop(_n: int) -> None:
    pass


class RegistryClient:
    def __init__(self, host: str, scheme: str = "https", credentials: tuple[str, str] | None = None, *,
                 transport: httpx.BaseTransport | None = None, chunk_size: int = CHUNK, what: str | None = None):
        self.host = host
        self.base = f"{scheme}://{host}"
        self.what = what or host  # how messages name the registry (Docker Hub says so)
        self.chunk_size = chunk_size
        self.http = httpx.Client(transport=transport, follow_redirects=True, timeout=httpx.Timeout(60.0, connect=10.0),
                                 headers={"User-Agent": "orch"})
        self.auth = Authenticator(self.http, host, credentials, "orch login" if host == DOCKER_HUB_API else f"orch login {host}")
        self.requests: list[tuple[str, str]] = []
        self._count_lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests with authentication --------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base + path

    def _unreachable(self, err: Exception) -> Unavailable:
        if self.host == DOCKER_HUB_API:
            return Unavailable(f"cannot reach Docker Hub ({self.host}): {err}; this machine has no route to Docker Hub, "
                               f"so use a registry it can reach (e.g. localhost:5000/NAME)")
        return Unavailable(f"cannot reach registry {self.what}: {err}; is it running, and is the address right?")

    def _send(self, method: str, path: str, scope: str, *, stream: bool = False, **kw) -> httpx.Response:
        url = self._url(path)
        headers = dict(kw.pop("headers", {}) or {})
        answer = None
        for attempt in (0, 1):
            auth_header = answer or self.auth.header(scope)
            if auth_header:
                headers["Authorization"] = auth_header
            with self._count_lock:
                self.requests.append((method, httpx.URL(url).path))
            try:
                resp = self.http.send(self.http.build_request(method, url, headers=headers, **kw), stream=stream)
            except httpx.TransportError as err:
                raise self._unreachable(err) from None
            challenge = resp.headers.get("www-authenticate", "")
            if resp.status_code != 401 or attempt == 1 or not challenge:
                return resp
            resp.close()
            # Answer the challenge once (a token for this scope, or Basic) and repeat.
            answer = self.auth.answer(challenge, scope)
        return resp

    def _fail(self, resp: httpx.Response, what: str) -> Exception:
        """An OrchError for an unexpected answer, with the registry's own error codes."""
        try:
            resp.read()
            errors = resp.json().get("errors") or []
            detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors)
        except (ValueError, AttributeError, httpx.HTTPError):
            detail = ""
        detail = detail or f"HTTP {resp.status_code}"
        if resp.status_code == 404:
            return NotFound(f"{what}: not found on {self.what} ({detail})")
        if resp.status_code in (401, 403):
            return UserError(f"{what}: access denied by {self.what} ({detail}); run '{self.auth.login_command}' with an account that may do this")
        return SystemFailure(f"{what}: registry {self.what} answered {resp.status_code} ({detail})")

    def ping(self) -> None:
        """GET /v2/: check that the registry speaks the API and that our credentials work."""
        resp = self._send("GET", "/v2/", "")
        if resp.status_code in (401, 403):
            who = f"user '{self.auth.credentials[0]}'" if self.auth.credentials else "anonymous access"
            raise UserError(f"login to {self.what}: the registry refused {who} (HTTP {resp.status_code}); check the user name and password")
        if resp.status_code != 200:
            raise self._fail(resp, "login")

    # -- manifests ---------------------------------------------------------------------------

    def get_manifest(self, repo: str, ref: str) -> tuple[str, dict, bytes, str]:
        """(media type, document, raw bytes, digest) of a manifest or index, digest verified."""
        what = f"manifest {repo}:{ref}" if not ref.startswith("sha256:") else f"manifest {repo}@{ref}"
        resp = self._send("GET", f"/v2/{repo}/manifests/{ref}", scope_for(repo, "pull"), headers={"Accept": mf.ACCEPT})
        if resp.status_code != 200:
            raise self._fail(resp, what)
        raw = resp.content
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if ref.startswith("sha256:") and digest != ref:
            raise SystemFailure(f"{what}: the registry sent a manifest whose digest is {digest}; refused")
        claimed = resp.headers.get("docker-content-digest")
        if claimed and claimed.startswith("sha256:") and claimed != digest:
            raise SystemFailure(f"{what}: the registry says its digest is {claimed} but the bytes hash to {digest}; refused")
        media, doc = mf.parse_document(raw, resp.headers.get("content-type", ""), what)
        return media, doc, raw, digest

    def head_manifest(self, repo: str, ref: str) -> str | None:
        """The digest a tag points to (Docker-Content-Digest of a HEAD), or None if not said."""
        resp = self._send("HEAD", f"/v2/{repo}/manifests/{ref}", scope_for(repo, "pull"), headers={"Accept": mf.ACCEPT})
        if resp.status_code != 200:
            return None  # a HEAD answer has no body to explain itself: the GET will say why
        digest = resp.headers.get("docker-content-digest", "")
        return digest if digest.startswith("sha256:") and len(digest) == 71 else None

    def put_manifest(self, repo: str, ref: str, media: str, raw: bytes) -> str:
        resp = self._send("PUT", f"/v2/{repo}/manifests/{ref}", scope_for(repo, "pull,push"),
                          headers={"Content-Type": media}, content=raw)
        if resp.status_code not in (200, 201, 202):
            raise self._fail(resp, f"push manifest {repo}:{ref}")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        claimed = resp.headers.get("docker-content-digest")
        if claimed and claimed != digest:
            raise SystemFailure(f"push manifest {repo}:{ref}: the registry stored digest {claimed}, we sent {digest}")
        return digest

    # -- blobs -------------------------------------------------------------------------------

    def has_blob(self, repo: str, digest: str) -> bool:
        resp = self._send("HEAD", f"/v2/{repo}/blobs/{digest}", scope_for(repo, "pull,push"))
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise self._fail(resp, f"blob {digest}")

    def get_blob(self, repo: str, digest: str, limit: int = 16 << 20) -> bytes:
        """A small blob (an image config) in memory, its digest verified."""
        resp = self._send("GET", f"/v2/{repo}/blobs/{digest}", scope_for(repo, "pull"), stream=True)
        try:
            if resp.status_code != 200:
                raise self._fail(resp, f"blob {repo}@{digest}")
            data = bytearray()
            for chunk in resp.iter_bytes(READ):
                data += chunk
                if len(data) > limit:
                    raise SystemFailure(f"blob {repo}@{digest}: larger than {limit} bytes; refused")
        finally:
            resp.close()
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != digest:
            raise SystemFailure(f"blob {repo}@{digest}: the registry sent content with digest {got}; refused")
        return bytes(data)

    def fetch_blob(self, repo: str, digest: str, size: int, writer, progress: Progress = _noop) -> None:
        """Stream a blob into a content-store writer; raise (the caller aborts it) if it is wrong.

        The size in the descriptor bounds the download, so a registry cannot fill the disk.
        """
        resp = self._send("GET", f"/v2/{repo}/blobs/{digest}", scope_for(repo, "pull"), stream=True)
        try:
            if resp.status_code != 200:
                raise self._fail(resp, f"blob {repo}@{digest}")
            try:
                for chunk in resp.iter_bytes(READ):
                    writer.write(chunk)
                    progress(len(chunk))
                    if writer.size > size:
                        raise SystemFailure(f"blob {repo}@{digest}: the registry sent more than the {size} bytes its descriptor says; refused")
            except httpx.TransportError as err:
                raise SystemFailure(f"blob {repo}@{digest}: the download broke off after {writer.size} bytes: {err}") from None
        finally:
            resp.close()
        if writer.digest != digest or writer.size != size:
            raise SystemFailure(f"blob {repo}@{digest}: the registry sent {writer.size} bytes with digest {writer.digest}; refused, nothing kept")

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> str | None:
        """Ask the registry to link a blob it has in another repository. Returns None when it
        did, else the upload URL it opened instead (distribution falls back to an upload)."""
        scope = f"{scope_for(repo, 'pull,push')} {scope_for(from_repo, 'pull')}"
        resp = self._send("POST", f"/v2/{repo}/blobs/uploads/", scope, params={"mount": digest, "from": from_repo})
        if resp.status_code == 201:
            return None
        if resp.status_code == 202 and resp.headers.get("location"):
            return resp.headers["location"]
        raise self._fail(resp, f"mount blob {digest} from {from_repo}")

    def start_upload(self, repo: str) -> str:
        resp = self._send("POST", f"/v2/{repo}/blobs/uploads/", scope_for(repo, "pull,push"))
        if resp.status_code != 202 or not resp.headers.get("location"):
            raise self._fail(resp, f"start upload to {repo}")
        return resp.headers["location"]

    def upload_status(self, repo: str, location: str) -> tuple[str, int]:
        """(location, bytes the registry has) of an upload session, to resume after a failure."""
        resp = self._send("GET", self._join(location), scope_for(repo, "pull,push"))
        if resp.status_code not in (200, 204):
            raise self._fail(resp, f"upload status for {repo}")
        end = _range_end(resp.headers.get("range"))
        return resp.headers.get("location") or location, end + 1

    def _join(self, location: str) -> str:
        return str(httpx.URL(self.base).join(location))

    def upload_blob(self, repo: str, digest: str, size: int, open_blob: Callable[[], BinaryIO], progress: Progress = _noop,
                    location: str | None = None) -> None:
        """Upload a blob in chunks (PATCH with Content-Range) and close it with PUT ?digest=."""
        scope = scope_for(repo, "pull,push")
        location = location or self.start_upload(repo)
        offset, failures = 0, 0
        with open_blob() as f:
            while offset < size:
                f.seek(offset)
                chunk = f.read(self.chunk_size)
                if not chunk:
                    raise SystemFailure(f"upload {digest}: the local blob ended at {offset} of {size} bytes")
                headers = {"Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
                try:
                    resp = self._send("PATCH", self._join(location), scope, headers=headers, content=chunk)
                    ok = resp.status_code == 202
                    err: Exception | None = None if ok else self._fail(resp, f"upload {digest} to {repo}")
                except Unavailable as e:
                    ok, err, resp = False, e, None
                if ok:
                    location = resp.headers.get("location") or location
                    offset += len(chunk)
                    progress(len(chunk))
                    failures = 0
                    continue
                failures += 1
                if failures > RETRIES:
                    raise err
                # Resume where the registry says it is: a chunk may have landed before the error.
                # distribution refuses (and cancels) a session whose state token is older than
                # its data, which is what a lost answer leaves us with: then start over.
                try:
                    location, have = self.upload_status(repo, location)
                except (NotFound, SystemFailure, UserError):
                    location, have = self.start_upload(repo), 0
                if have != offset:
                    progress(have - offset)
                offset = have
        url = httpx.URL(self._join(location))
        resp = self._send("PUT", str(url.copy_merge_params({"digest": digest})), scope, headers={"Content-Length": "0"})
        if resp.status_code not in (201, 204):
            raise self._fail(resp, f"finish upload of {digest} to {repo}")


def _range_end(value: str | None) -> int:
    """The last byte of a `Range: 0-<end>` header; -1 when the registry has nothing yet.

    distribution writes "0-0" for an empty upload too; taking it as empty is the safe reading
    (at worst one byte is sent again, and the registry checks the digest at the end).
    """
    if not value or value.replace("bytes=", "") == "0-0":
        return -1
    _, _, end = value.replace("bytes=", "").partition("-")
    try:
        return int(end)
    except ValueError:
        raise InvalidArgument(f"the registry sent a malformed Range header '{value}'") from None
