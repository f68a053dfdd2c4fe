"""The agent's copies of its containers' pipes, so that they outlive a supervisor.

A container's stdout and stderr are pipes whose read ends the supervisor holds; if it died
(`kill -9`) with the only copies, the next write of the container would get SIGPIPE and end
it. So the supervisor sends the agent a copy of each running container's read ends, pty
master and held stdin (with the `started` event, and again when the agent subscribes after a
restart of its own), and the agent gives them back when it asks a new supervisor to adopt
the container (node.adopt). Only when both processes die at once are the pipes lost.

The agent never reads them. Descriptors arrive with MSG_CMSG_CLOEXEC. They count against the
agent's RLIMIT_NOFILE as the originals count against the supervisor's (two or three a running
container); neither raises its limit, since the containers would inherit it.
"""

import os


class HeldPipes:
    def __init__(self):
        self._held: dict[str, tuple[list[str], list[int]]] = {}

    def hold(self, cid: str, roles, fds) -> None:
        """Keep `fds` (named by `roles`: "stdout", "stderr", "master", "stdin") for `cid`,
        in place of any copies held before."""
        roles, fds = list(roles or ()), list(fds)
        if len(roles) != len(fds):
            _close_all(fds)
            return
        self.release(cid)
        if fds:
            self._held[cid] = (roles, fds)

    def get(self, cid: str) -> tuple[list[str], list[int]]:
        """The roles and fds held for `cid` (still held: SCM_RIGHTS sends copies)."""
        return self._held.get(cid, ([], []))

    def release(self, cid: str) -> None:
        _, fds = self._held.pop(cid, ([], []))
        _close_all(fds)

    def __len__(self) -> int:
        return len(self._held)


def _close_all(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
