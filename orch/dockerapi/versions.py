"""The Docker Engine API's versions, negotiated as dockerd does (pure).

A client learns the server's version from `/_ping` (the `API-Version` header, which every
answer carries) or `/version` (`ApiVersion`, `MinAPIVersion`), takes the lower of the server's
and its own, and prefixes its paths with it: `/v1.47/containers/json`. A path without a prefix
is served at the server's version. dockerd refuses a version below its minimum or above its
maximum with 400 and these words (moby api/server/middleware/version.go).

orch serves 1.24 to 1.47: the shapes of 1.41 (dockerd 20.10, the peer on this machine) and
later, which older clients read too (docker-compose v1 speaks 1.38 for a compose file of
version 3.x). Where a shape differs by version, the handler asks `at_least(version, ...)`.
"""

from __future__ import annotations

MIN_VERSION = "1.24"
MAX_VERSION = "1.47"


def parse(text: str) -> tuple[int, int] | None:
    major, dot, minor = text.partition(".")
    if not dot or not major.isdigit() or not minor.isdigit():
        return None
    return int(major), int(minor)


def split_path(path: str) -> tuple[str | None, str]:
    """("1.41", "/containers/json") for "/v1.41/containers/json"; (None, path) without a
    prefix. A prefix that is no version ("/vx/...") is left in the path (no route matches it)."""
    if path.startswith("/v"):
        head, slash, rest = path[2:].partition("/")
        if parse(head) is not None:
            return head, "/" + rest if slash else "/"
    return None, path


def refusal(version: str) -> str | None:
    """dockerd's message for a version it does not serve, or None."""
    asked = parse(version)
    if asked is None:
        return f"client version {version} is not a version; give MAJOR.MINOR such as {MAX_VERSION}"
    if asked < parse(MIN_VERSION):
        return (f"client version {version} is too old. Minimum supported API version is {MIN_VERSION}, "
                "please upgrade your client to a newer version")
    if asked > parse(MAX_VERSION):
        return f"client version {version} is too new. Maximum supported API version is {MAX_VERSION}"
    return None


def at_least(version: str | None, wanted: str) -> bool:
    """Whether a request made at `version` (None: the server's) is at `wanted` or later."""
    return (parse(version or MAX_VERSION) or (0, 0)) >= parse(wanted)
