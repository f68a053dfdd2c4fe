"""Where a reference lives: the registry's host, the repository path, the credentials key.

Docker's defaults apply: "busybox" is docker.io/library/busybox:latest (see
orch/node/runtime/reference.py), the API of docker.io is served by registry-1.docker.io, and
its credentials are stored under "https://index.docker.io/v1/" as docker's config.json does.
Registries on loopback (or listed in ORCH_INSECURE_REGISTRIES, comma-separated hosts) are
spoken to in plain HTTP, as docker treats 127.0.0.0/8 as insecure; the others over HTTPS.

Pure: no I/O (the environment variable is passed in by the caller).
"""

from dataclasses import dataclass

from orch.node.runtime import reference
from orch.node.runtime.reference import DEFAULT_DOMAIN, Reference

DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY, "https://index.docker.io/v1")


@dataclass(frozen=True)
class Location:
    """A repository on a registry: `ref` is the normalized reference it came from."""

    ref: Reference
    host: str  # the host[:port] that serves the API
    scheme: str  # "https" or "http"
    defaulted_tag: bool = False  # the user gave no tag: ":latest" was added

    @property
    def repository(self) -> str:
        return self.ref.path

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def is_docker_hub(self) -> bool:
        return self.ref.domain == DEFAULT_DOMAIN


def api_host(domain: str) -> str:
    return DOCKER_HUB_API if domain == DEFAULT_DOMAIN else domain


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    return name in ("localhost", "::1") or name.startswith("127.")


def scheme_for(host: str, insecure: str = "") -> str:
    listed = {h.strip() for h in insecure.split(",") if h.strip()}
    return "http" if is_loopback(host) or host in listed or host.split(":")[0] in listed else "https"


def locate(ref: str, insecure: str = "") -> Location:
    """Parse a reference (docker's defaults) and say where its registry is."""
    parsed = reference.parse(ref)
    host = api_host(parsed.domain)
    bare = reference.parse(ref, default_tag=False)
    return Location(parsed, host, scheme_for(host, insecure), bare.tag is None and bare.digest is None)


def credentials_key(server: str | None) -> str:
    """The key under "auths" for a server the user names (none, or any Docker Hub alias: Hub)."""
    if not server:
        return DOCKER_HUB_KEY
    s = server.strip().rstrip("/")
    if s in _HUB_ALIASES or s + "/" in _HUB_ALIASES:
        return DOCKER_HUB_KEY
    for prefix in ("https://", "http://"):
        if s.startswith(prefix):
            s = s[len(prefix) :]
    return s.split("/", 1)[0]


def credentials_key_for(domain: str) -> str:
    return DOCKER_HUB_KEY if domain == DEFAULT_DOMAIN else domain
