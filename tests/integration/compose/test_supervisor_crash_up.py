"""`orch compose up` after `kill -9` of the node supervisor (issue 10): the service's container,
a volume writer, is adopted, and `up` makes no second writer beside it."""

import os
import signal
import time
from pathlib import Path

import pytest

from tests.integration.compose.conftest import _supervisor_pid

pytestmark = pytest.mark.privileged

STACK = """
services:
  writer:
    image: busybox:latest
    command: ["sh", "-c", "t=$$(cat /proc/sys/kernel/random/uuid); while true; do echo $$t >> /data/log; usleep 20000; done"]
    restart: always
    volumes: [data:/data]
volumes:
  data: {}
"""


def wait_for(predicate, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_up_after_a_supervisor_kill_keeps_one_writer(node, stack):
    stack.write(STACK)
    stack.compose("up", "-d")
    container = f"{stack.name}-writer-1"
    volume = node.inspect(container)["Mounts"][0]["Source"]
    log = Path(volume) / "log"
    wait_for(lambda: log.exists() and len(log.read_text().split()) >= 5, "the first lines")
    token = set(log.read_text().split())
    pid = node.inspect(container)["State"]["Pid"]
    old = _supervisor_pid(node)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: _supervisor_pid(node) not in (None, old), "a new supervisor")
    stack.compose("up", "-d")
    size = len(log.read_text().split())
    wait_for(lambda: len(log.read_text().split()) >= size + 20, "more lines")
    assert set(log.read_text().split()[-40:]) == token
    assert node.inspect(container)["State"]["Pid"] == pid
    assert stack.compose("ps", "-q").stdout.split() == [node.inspect(container)["Id"]]
