"""Error families shared by every part of orch.

Two families, as containerd's errdefs and h11 have them: the user's input (a stack file, a
Dockerfile, a CLI flag) and the world (the kernel, the network, a registry). Each carries a
category that the CLI and the agent's HTTP API map to an exit code or a status code.

Messages are lower-case, one line, name the object and the operation, and where they can say
how to fix the misuse. The CLI prints them as `orch: <message>` without a traceback.

This module imports nothing beyond the standard library: the CLI's hot path loads it.
"""


class OrchError(Exception):
    """Base of every error orch reports to a user. `str(err)` is the one-line message."""

    exit_code = 1
    http_status = 500
    kind = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# The user's input.
class UserError(OrchError):
    """Input that orch cannot accept: a stack file, a Dockerfile, a flag."""

    exit_code = 1
    http_status = 400
    kind = "invalid-argument"


class InvalidArgument(UserError):
    pass


class NotFound(OrchError):
    exit_code = 1
    http_status = 404
    kind = "not-found"


class AlreadyExists(OrchError):
    exit_code = 1
    http_status = 409
    kind = "already-exists"


class Conflict(OrchError):
    """The operation is not allowed in the object's current state (rm of a running container)."""

    exit_code = 1
    http_status = 409
    kind = "conflict"


class NotImplementedHere(OrchError):
    """The operation does not exist here: an API route the agent does not have (errdefs'
    ErrNotImplemented). Kept apart from NotFound, which is about an object, never a feature."""

    exit_code = 1
    http_status = 501
    kind = "not-implemented"


class PermissionDenied(OrchError):
    """The caller is not allowed: a worker's certificate where a manager's is needed, a
    rotated join token, a CA that does not match the token's pin."""

    exit_code = 1
    http_status = 403
    kind = "permission-denied"


# The world.
class SystemFailure(OrchError):
    """The kernel, the file system or a process failed: the message names the operation."""

    exit_code = 125
    http_status = 500
    kind = "system"


class Unavailable(OrchError):
    """A service orch needs (the node agent, a registry) cannot be reached."""

    exit_code = 125
    http_status = 503
    kind = "unavailable"


KINDS = {cls.kind: cls for cls in (OrchError, UserError, NotFound, AlreadyExists, Conflict, NotImplementedHere, PermissionDenied,
                                   SystemFailure, Unavailable)}


def from_kind(kind: str, message: str) -> OrchError:
    """Rebuild an error that crossed the agent's API from its kind and message."""
    return KINDS.get(kind, OrchError)(message)
