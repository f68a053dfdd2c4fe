"""The user's terminal and the container (issue 10, item 6), with a real pseudo-terminal on the
client's side, as a user's shell gives it.

Without -t a terminal is never handed to the container: the client relays it through a pipe,
so a program in the image cannot read what the user types after `exec` returns, nor change the
terminal's settings. With -t the container has a terminal of its own, and what the user typed
before the client went raw reaches it (docker keeps type-ahead; a TCSAFLUSH would drop it).
"""

import os
import termios
import time

import pytest

from tests.integration.agent.test_commands import _read_until, in_pty, name

pytestmark = pytest.mark.privileged


def _wait_for_file(path, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def _finish(proc, master, timeout=20):
    try:
        return proc.wait(timeout)
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def box(node, tmp_path):
    """A running container with the test's directory at /out."""
    os.chmod(tmp_path, 0o777)
    n = name()
    node.orch("run", "-d", "--name", n, "-v", f"{tmp_path}:/out", "busybox", "sleep", "300")
    yield n, tmp_path
    node.orch("rm", "-f", n)


# A program that leaves a process behind which keeps the exec's stdin and stdout (fds 3 and 4)
# and reads them after the exec has returned: the user's next lines, if it holds the terminal.
THIEF = ("exec 3<&0 4<&1; (head -n 1 <&3 > /out/stdin; head -n 1 <&4 > /out/stdout; echo done > /out/done) "
         "</dev/null >/dev/null 2>&1 & echo started")


def test_a_program_cannot_read_the_terminal_after_exec_returns(node, box):
    n, out = box
    proc, master = in_pty(node, "exec", "-i", n, "sh", "-c", THIEF)
    try:
        assert b"started" in _read_until(master, b"started")
        assert _finish(proc, master) == 0
        # exec has returned: the user types the next commands for their own shell.
        os.write(master, b"secret\nsecond\n")
        _wait_for_file(out / "done")
        assert ((out / "stdin").read_text(), (out / "stdout").read_text()) == ("", "")
    finally:
        os.close(master)


@pytest.mark.parametrize("command", ["exec", "run"])
def test_a_program_cannot_change_the_terminals_settings(node, box, command):
    n, _ = box
    target = [n] if command == "exec" else ["--rm", "busybox"]
    proc, master = in_pty(node, command, "-i", *target, "sh", "-c",
                          "stty raw -echo; stty raw -echo <&1; stty raw -echo <&2; echo tried")
    try:
        before = termios.tcgetattr(master)
        _read_until(master, b"tried")
        _finish(proc, master)
        after = termios.tcgetattr(master)
        assert after[3] & (termios.ECHO | termios.ICANON) == termios.ECHO | termios.ICANON
        assert after == before
    finally:
        os.close(master)


@pytest.mark.parametrize("command", ["run", "exec"])
def test_type_ahead_reaches_a_terminal_container(node, box, command):
    """What the user typed before the client put the terminal in raw mode is not lost."""
    import pty

    n, _ = box
    master, slave = pty.openpty()
    os.write(master, b"echo $((6*7))x; exit 3\n")  # typed before the client even starts
    target = [n] if command == "exec" else ["--rm", "busybox"]
    try:
        proc = node.popen(command, "-it", *target, "sh", stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    finally:
        os.close(slave)
    try:
        assert b"42x" in _read_until(master, b"42x")
        assert _finish(proc, master) == 3
    finally:
        os.close(master)
