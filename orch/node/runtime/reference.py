"""Image references with docker's normalization (distribution/reference's grammar).

"busybox", "busybox:latest", "library/busybox" and "docker.io/library/busybox:latest" name
the same image: a name without a registry domain lives on docker.io, a one-component name on
docker.io lives under library/, and a reference without a tag or digest means :latest. The
store keeps fully qualified names; the CLI shows the short ("familiar") form, as docker does.

Pure: no I/O.
"""

import re
from dataclasses import dataclass

from orch.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_HEX = re.compile(r"^[a-f0-9]{1,64}$")


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    @property
    def familiar_name(self) -> str:
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        return self.path[len(OFFICIAL_PREFIX) :] if self.path.startswith(OFFICIAL_PREFIX) else self.path

    def familiar(self) -> str:
        s = self.familiar_name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s


def parse(ref: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalize a reference; add :latest unless a tag or digest is given."""
    original = ref
    if not ref or ref != ref.strip():
        raise InvalidArgument(f"invalid reference format: '{original}'")
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidArgument(f"invalid reference format: '{original}': the digest must be sha256: and 64 hex digits")
    tag = None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidArgument(f"invalid reference format: '{original}': bad tag '{tag}'")
    parts = ref.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost" or parts[0] != parts[0].lower()):
        domain, rest = parts[0], parts[1:]
        if not _DOMAIN.match(domain):
            raise InvalidArgument(f"invalid reference format: '{original}': bad registry '{domain}'")
    else:
        domain, rest = DEFAULT_DOMAIN, parts
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    for comp in rest:
        if not _COMPONENT.match(comp):
            hint = " (repository names must be lower-case)" if comp.lower() != comp else ""
            raise InvalidArgument(f"invalid reference format: '{original}'{hint}")
    path = "/".join(rest)
    if domain == DEFAULT_DOMAIN and len(rest) == 1:
        path = OFFICIAL_PREFIX + path
    if len(path) + len(domain) + 1 > 255:
        raise InvalidArgument(f"invalid reference format: '{original}': repository name longer than 255 characters")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def normalize(ref: str) -> str:
    """The fully qualified name:tag (or name@digest) the store keys references by."""
    return str(parse(ref))


def familiar(full: str) -> str:
    """The short form docker prints: docker.io/library/busybox:latest -> busybox:latest."""
    return parse(full).familiar()


def looks_like_id(ref: str) -> bool:
    """Whether `ref` could be an image id or id prefix (sha256:<hex> or bare hex)."""
    if ref.startswith("sha256:"):
        return bool(_HEX.match(ref[7:]))
    return bool(_HEX.match(ref))
