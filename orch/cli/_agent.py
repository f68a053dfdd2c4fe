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
    import subprocess

    root = paths.root()
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / "agent.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orch", "agent"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, cwd="/", close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if answers(path):
            return
        if proc.poll() not in (None, 0):  # 0: another agent took the node first; wait for it
            raise Unavailable(f"the node agent exited with code {proc.returncode} while starting; see {log_path}")
        time.sleep(0.02)
    raise Unavailable(f"the node agent did not answer at {path} within {START_TIMEOUT:.0f} s; see {log_path}")
