"""Registry authentication: the WWW-Authenticate challenge, Bearer tokens and Basic.

A registry that wants credentials answers 401 with a challenge (RFC 7235; distribution's
docs/spec/auth/token.md):

    WWW-Authenticate: Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"
    WWW-Authenticate: Basic realm="Registry Realm"

For Bearer, the client asks the realm for a token with GET ?service=...&scope=... (with Basic
credentials when it has some, anonymously otherwise: Docker Hub gives anonymous pull tokens),
and repeats the request with `Authorization: Bearer <token>`. Tokens are kept per scope until
they expire. For Basic, the client sends the stored user and password with every request.

`parse_challenge` is pure; `Authenticator` does the token requests through the client's httpx.
"""

import base64
import re
import threading
import time
from dataclasses import dataclass, field

from orch.errors import InvalidArgument, SystemFailure, Unavailable, UserError

_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic" (lower-case)
    params: dict = field(default_factory=dict)


def parse_challenge(header: str) -> list[Challenge]:
    """The challenges of one WWW-Authenticate value, in order; unknown schemes are kept too."""
    out: list[Challenge] = []
    rest = header.strip()
    while rest:
        m = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*", rest)
        if not m:
            break
        scheme = m.group(1).lower()
        rest = rest[m.end() :]
        params = {}
        while True:
            # A parameter is name=value; a bare word followed by a space starts the next scheme.
            pm = _PARAM.match(rest)
            if not pm:
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            rest = rest[pm.end() :]
        out.append(Challenge(scheme, params))
        rest = rest.lstrip(", ")
    return out


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def scope_for(repository: str, actions: str) -> str:
    return f"repository:{repository}:{actions}"


class Authenticator:
    """Authorization headers for one registry: learns the scheme from the first 401."""

    def __init__(self, http, host: str, credentials: tuple[str, str] | None, login_command: str | None = None):
        self.http = http
        self.host = host
        self.login_command = login_command or f"orch login {host}"
        self.credentials = credentials
        self.scheme: str | None = None
        self.bearer: dict = {}
        self.tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def header(self, scope: str) -> str | None:
        """The Authorization header to send for `scope` before any challenge, if known."""
        with self._lock:
            if self.scheme == "basic" and self.credentials:
                return basic_header(*self.credentials)
            if self.scheme == "bearer":
                token = self.tokens.get(scope)
                if token and token[1] > time.monotonic():
                    return "Bearer " + token[0]
        return None

    def answer(self, www_authenticate: str, scope: str) -> str:
        """Answer a 401's challenge for `scope`: return the header to retry with."""
        challenges = parse_challenge(www_authenticate or "")
        by_scheme = {c.scheme: c for c in challenges}
        if "bearer" in by_scheme:
            return "Bearer " + self._token(by_scheme["bearer"], scope)
        if "basic" in by_scheme:
            if not self.credentials:
                raise UserError(f"registry {self.host} wants a user name and password: run '{self.login_command}'")
            with self._lock:
                self.scheme = "basic"
            return basic_header(*self.credentials)
        raise SystemFailure(f"registry {self.host} asked for authentication with an unsupported challenge '{www_authenticate}'")

    def _token(self, challenge: Challenge, scope: str) -> str:
        import httpx

        realm = challenge.params.get("realm")
        if not realm:
            raise SystemFailure(f"registry {self.host} sent a Bearer challenge without a realm")
        # The challenge's own scope says what this request needs; ask for it and ours.
        scopes = list(dict.fromkeys(scope.split() + challenge.params.get("scope", "").split()))
        params = [("scope", s) for s in scopes]
        if challenge.params.get("service"):
            params.insert(0, ("service", challenge.params["service"]))
        headers = {"Authorization": basic_header(*self.credentials)} if self.credentials else {}
        try:
            resp = self.http.get(realm, params=params, headers=headers)
        except httpx.HTTPError as err:
            raise Unavailable(f"cannot reach the token server {realm} of registry {self.host}: {err}") from None
        if resp.status_code in (401, 403):
            who = f"as {self.credentials[0]}" if self.credentials else "anonymously"
            raise UserError(f"registry {self.host}: the token server refused access {who} to {', '.join(scopes)}; check '{self.login_command}'")
        if resp.status_code != 200:
            raise SystemFailure(f"registry {self.host}: the token server {realm} answered {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            raise SystemFailure(f"registry {self.host}: the token server {realm} sent a body that is not JSON") from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise SystemFailure(f"registry {self.host}: the token server {realm} sent no token")
        # distribution's spec: expires_in defaults to 60 seconds; keep a margin.
        lifetime = float(body.get("expires_in") or 60)
        with self._lock:
            self.scheme = "bearer"
            for s in scopes + [scope]:
                self.tokens[s] = (token, time.monotonic() + max(lifetime - 10, 1))
        return token


def decode_auth(value: str, where: str) -> tuple[str, str]:
    """docker's config.json "auth": base64 of "user:password"."""
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise InvalidArgument(f"{where}: 'auth' is not base64 of 'user:password'; run 'orch login' again")
    return user, password


def encode_auth(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()
