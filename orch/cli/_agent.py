"""Finding the node agent, or starting one.

Every command that needs the agent calls `client()`. A connect(2) to the unix socket costs
microseconds, so the check is cheap enough for the `orch run` hot path. When nothing answers
the CLI starts `orch agent` itself (setsid, logs to ORCH_ROOT/agent.log) and waits for its
socket, as the docker CLI relies on dockerd being started by the system; a user who is not
root is told in one line how to start it.
"""

import os
import socket
import sys
import time

from orch import paths
from orch.client import Client
from orch.errors import Unavailable

START_TIMEOUT = 10.0


def answers(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def client() -> Client:
    path = str(paths.agent_socket())
    if not answers(path):
        start_agent(path)
    return Client(path)


def start_agent(path: str) -> None:
    if os.geteuid() != 0:
        raise Unavailable(f"no node agent answers at {path}; start one as root with 'sudo orch agent --detach'")
    root = paths.root()
    paths.private_dir(root)  # root only: see orch.paths
    log_path = root / "agent.log"
    pid = _spawn_detached([sys.executable, "-m", "orch.node.agent"], log_path)
    deadline = time.monotonic() + START_TIMEOUT
    gone_since = None
    while time.monotonic() < deadline:
        if answers(path):
            return
        if not _alive(pid):
            # It lost the node's lock to another agent starting at the same moment (then that
            # one answers soon), or it failed: give the other one a second.
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since > 1.0:
                raise Unavailable(f"the node agent exited while starting; see {log_path}")
        time.sleep(0.02)
    raise Unavailable(f"the node agent did not answer at {path} within {START_TIMEOUT:.0f} s; see {log_path}")


def _spawn_detached(argv: list[str], log_path) -> int:
    """Start `argv` in a session of its own, as a child of init rather than of this CLI (a
    double fork): a long `orch run` that started the agent must not be the parent that
    would have to reap it. Return its pid."""
    import subprocess

    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(r)
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        start_new_session=True, cwd="/", close_fds=True)
            os.write(w, str(proc.pid).encode())
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(w)
    try:
        data = os.read(r, 32)
    finally:
        os.close(r)
        os.waitpid(middle, 0)
    if not data:
        raise Unavailable(f"could not start the node agent; see {log_path}")
    return int(data)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
