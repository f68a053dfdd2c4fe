"""The CLI's client for the node agent's HTTP API on a unix socket.

Why not http.client or httpx: the CLI's hot path (`orch run --rm IMAGE true`) must start in
tens of milliseconds, and importing http.client costs about 35 ms here, httpx about 130. The
agent is ours and always answers HTTP/1.1 with a Content-Length (hypercorn), or chunked
transfer for streams, so this module speaks exactly that subset: one request per connection,
JSON bodies. Everything else (the server, streaming logs in tests, registries) uses real
libraries.

Errors from the agent come back as `{"kind": ..., "message": ...}` and are raised as the
matching `orch.errors` class, so the CLI prints them as one line.
"""

import json
import socket

from orch import paths
from orch.errors import Unavailable, from_kind


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quoted(segment: str, safe: str = "") -> str:
    """One segment of a request path with every other byte percent-encoded, so that a name the
    user typed ("a/b", "x?force=1", "%2e%2e") stays one segment and never reaches another route
    (urllib.parse.quote, without its import cost). `safe`: characters to keep, such as "/:@"
    in an image reference, which the agent's routes take as a path."""
    keep = _UNRESERVED | frozenset(safe.encode())
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in str(segment).encode())


class Client:
    def __init__(self, sock_path: str | None = None, timeout: float | None = None):
        self.sock_path = str(sock_path or paths.agent_socket())
        self.timeout = timeout

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.sock_path)
        except OSError as err:
            s.close()
            raise Unavailable(
                f"cannot reach the node agent at {self.sock_path} ({err.strerror}); start it with 'orch agent --detach'"
            ) from None
        return s

    def request(self, method: str, path: str, body=None, headers: dict[str, str] | None = None
                ) -> tuple[int, dict, "socket.socket", bytes]:
        """Send a request; return (status, headers, socket, bytes already read past the headers)."""
        data = b"" if body is None else json.dumps(body).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: orch\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        ).encode()
        s = self.connect()
        s.sendall(head + data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                s.close()
                raise Unavailable("the node agent closed the connection before answering; see its log")
            buf += chunk
        raw_head, rest = buf.split(b"\r\n\r\n", 1)
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers, s, rest

    def call(self, method: str, path: str, body=None, headers: dict[str, str] | None = None):
        """One JSON request and its JSON answer; an error answer is raised as an OrchError."""
        status, headers, s, rest = self.request(method, path, body, headers)
        try:
            payload = b"".join(_body(s, headers, rest))
        finally:
            s.close()
        value = _json_or_none(headers, payload)
        if status >= 400:
            if isinstance(value, dict) and "message" in value:
                raise from_kind(value.get("kind", "error"), value["message"])
            raise Unavailable(f"the node agent answered {status} to {method} {path}")
        return value

    def head(self, method: str, path: str) -> dict:
        """A request whose answer's headers are what matters (docker's HEAD .../archive):
        the headers, lower-cased; an error answer is raised."""
        status, headers, s, rest = self.request(method, path)
        try:
            payload = b"" if method == "HEAD" else b"".join(_body(s, headers, rest))
        finally:
            s.close()
        if status >= 400:
            value = _json_or_none(headers, payload)
            if isinstance(value, dict) and "message" in value:
                raise from_kind(value.get("kind", "error"), value["message"])
            raise _status_error(status, method, path)
        return headers

    def open_stream(self, method: str, path: str):
        """(headers, chunks) of a streamed answer; an error answer is raised at once."""
        status, headers, s, rest = self.request(method, path)
        if status >= 400:
            try:
                value = _json_or_none(headers, b"".join(_body(s, headers, rest)))
            finally:
                s.close()
            if isinstance(value, dict) and "message" in value:
                raise from_kind(value.get("kind", "error"), value["message"])
            raise _status_error(status, method, path)

        def chunks():
            try:
                yield from _body(s, headers, rest)
            finally:
                s.close()

        return headers, chunks()

    def upload(self, method: str, path: str, chunks, content_type: str = "application/x-tar"):
        """Send a body made of `chunks` (bytes) with chunked transfer encoding, as it is made;
        return the JSON answer (None for an empty one); an error answer is raised."""
        head = (f"{method} {path} HTTP/1.1\r\nHost: orch\r\nContent-Type: {content_type}\r\n"
                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
        s = self.connect()
        try:
            s.sendall(head)
            try:
                for chunk in chunks:
                    if chunk:
                        s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                s.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the agent answered early (an error): read it below
            buf = b""
            while b"\r\n\r\n" not in buf:
                more = s.recv(65536)
                if not more:
                    raise Unavailable("the node agent closed the connection before answering; see its log")
                buf += more
            raw_head, rest = buf.split(b"\r\n\r\n", 1)
            lines = raw_head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            value = _json_or_none(headers, b"".join(_body(s, headers, rest)))
        finally:
            s.close()
        if status >= 400:
            if isinstance(value, dict) and "message" in value:
                raise from_kind(value.get("kind", "error"), value["message"])
            raise _status_error(status, method, path)
        return value

    def stream(self, method: str, path: str, body=None):
        """Yield the body of a streamed (chunked) answer piece by piece."""
        status, headers, s, rest = self.request(method, path, body)
        try:
            if status >= 400:
                value = _json_or_none(headers, b"".join(_body(s, headers, rest)))
                if isinstance(value, dict) and "message" in value:
                    raise from_kind(value.get("kind", "error"), value["message"])
                raise Unavailable(f"the node agent answered {status} to {method} {path}")
            yield from _body(s, headers, rest)
        finally:
            s.close()


def _status_error(status: int, method: str, path: str):
    """An error answer without a body (a HEAD's): its category from the status."""
    from orch.errors import Conflict, InvalidArgument, NotFound

    kind = {400: InvalidArgument, 404: NotFound, 409: Conflict}.get(status, Unavailable)
    return kind(f"the node agent answered {status} to {method} {path}")


def _json_or_none(headers: dict, payload: bytes):
    """The JSON body, or None when the answer is empty or not JSON (a proxy's or server's own
    error page must become a one-line error, not a parse failure)."""
    if not payload or "json" not in headers.get("content-type", ""):
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return None


def _body(s: socket.socket, headers: dict, rest: bytes):
    if headers.get("transfer-encoding", "").lower() == "chunked":
        yield from _chunks(s, rest)
        return
    length = headers.get("content-length")
    if length is not None:
        need = int(length)
        buf = rest
        while len(buf) < need:
            chunk = s.recv(max(65536, need - len(buf)))
            if not chunk:
                break
            buf += chunk
        yield buf[:need]
        return
    yield rest
    while chunk := s.recv(65536):
        yield chunk


def _chunks(s: socket.socket, buf: bytes):
    while True:
        while b"\r\n" not in buf:
            more = s.recv(65536)
            if not more:
                return
            buf += more
        size_line, buf = buf.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return
        while len(buf) < size + 2:
            more = s.recv(65536)
            if not more:
                yield buf[:size]
                return
            buf += more
        yield buf[:size]
        buf = buf[size + 2 :]
