"""What a client can make the agent hold (orch/node/agent/limits.py, runsock.py), tried as an
attacker would against a real agent: a 2 GB request body, announced and chunked, sent as a
stream (the test never holds it); connections that say nothing, on orch.sock and on run.sock;
and meanwhile other clients, which must go on being answered."""

import json
import os
import select
import socket
import threading
import time

import pytest

from orch.node.agent import limits, runsock

pytestmark = pytest.mark.privileged

TWO_GB = 2 << 30
CHUNK = b"\0" * (1 << 20)


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class Sampler:
    """The agent's RSS, sampled every 20 ms while the test sends."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, rss_kib(pid), threading.Event()
        self.before = self.peak
        self._thread = threading.Thread(target=self._run)

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_kib(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def send_big_body(path: str, *, chunked: bool, sampler: Sampler) -> tuple[int, int, dict]:
    """POST a 2 GB body of zeros to /containers/create, a MiB at a time, until the agent answers
    or closes. Returns (bytes of body sent, status, answer). Gives up, failing, as soon as the
    agent's RSS has grown by 512 MiB (the agent would be reading the body into memory)."""
    head = "POST /containers/create HTTP/1.1\r\nHost: orch\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {TWO_GB}\r\n\r\n"
    frame = (b"%x\r\n" % len(CHUNK)) + CHUNK + b"\r\n" if chunked else CHUNK
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(path)
        s.sendall(head.encode())
        try:
            while sent < TWO_GB:
                if select.select([s], [], [], 0)[0]:
                    break  # the agent answered (before the body is all there)
                assert sampler.peak - sampler.before < 512 << 10, \
                    f"the agent's RSS grew by {(sampler.peak - sampler.before) >> 10} MiB after {sent >> 20} MiB of body"
                s.sendall(frame)
                sent += len(CHUNK)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the agent closed the connection: its answer is still there to read
        answer = read_to_end(s)
    head, _, body = answer.partition(b"\r\n\r\n")
    return sent, int(head.split(b" ", 2)[1]), json.loads(body)


def read_to_end(s: socket.socket) -> bytes:
    """What the agent sent before it closed. (A unix socket closed with our data unread in it
    ends in ECONNRESET instead of EOF, once what it sent has been read.)"""
    answer = b""
    try:
        while chunk := s.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def ping(path: str) -> float:
    """GET /_ping on a fresh connection; the seconds it took."""
    start = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: orch\r\nConnection: close\r\n\r\n")
        answer = read_to_end(s)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    return time.monotonic() - start


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_2gb_body_is_refused_early_and_others_are_answered(node, chunked):
    sock = str(node.run_dir / "orch.sock")
    pings: list[float] = []
    failed: list[BaseException] = []
    stop = threading.Event()

    def keep_pinging():
        while not stop.wait(0.05):
            try:
                pings.append(ping(sock))
            except BaseException as err:
                failed.append(err)

    pinger = threading.Thread(target=keep_pinging)
    with Sampler(node.agent_pid()) as sampler:
        pinger.start()
        try:
            sent, status, answer = send_big_body(sock, chunked=chunked, sampler=sampler)
        finally:
            stop.set()
            pinger.join()
    grew = (sampler.peak - sampler.before) >> 10
    print(f"\n2 GB body ({'chunked' if chunked else 'with Content-Length'}): refused after {sent >> 20} MiB sent, "
          f"agent RSS {sampler.before >> 10} -> peak {sampler.peak >> 10} MiB; {len(pings)} pings meanwhile, "
          f"slowest {max(pings, default=0) * 1000:.0f} ms")
    assert status == 413 and answer["kind"] == "invalid-argument", answer
    assert "over the agent's limit of 16 MiB" in answer["message"] and "\n" not in answer["message"]
    # Refused on the announced length before any of it is read, or soon after the limit when
    # chunked (what the socket buffers held meanwhile comes on top).
    assert sent <= (limits.MAX_BODY + (64 << 20) if chunked else 64 << 20), sent
    assert grew < 64, f"the agent's RSS grew by {grew} MiB"
    # Other clients were answered meanwhile, and are after.
    assert not failed, failed[0]
    assert ping(sock) < 5


def test_idle_connections_are_dropped_and_do_not_stop_a_run(node):
    """On orch.sock: a connection that sends nothing, and one whose body stops coming. On
    run.sock: many connections that send nothing. All are closed by the agent after their
    timeouts, and meanwhile `orch run` works."""
    run_sock = str(node.run_dir / "run.sock")
    orch_sock = str(node.run_dir / "orch.sock")
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.connect(orch_sock)
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.connect(orch_sock)
    stalled.sendall(b"POST /containers/create HTTP/1.1\r\nHost: orch\r\nContent-Length: 100\r\n\r\n{\"Image\"")
    silent = []
    try:
        for _ in range(runsock.MAX_PENDING * 2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(run_sock)
            silent.append(s)
        started = time.monotonic()
        # Many silent connections do not keep a real run out.
        assert node.orch("run", "--rm", "busybox", "echo", "through").stdout == "through\n"
        # Each is closed by the agent: EOF (or a reset) within its timeout and a margin.
        for s in [idle, stalled, *silent]:
            s.settimeout(max(limits.KEEP_ALIVE, limits.BODY_IDLE, runsock.FIRST_MESSAGE) + 5)
        answer = read_to_end(stalled)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"the request body stopped coming" in answer
        assert idle.recv(100) == b""
        for s in silent:
            try:
                assert s.recv(100) == b""
            except ConnectionResetError:
                pass
        waited = time.monotonic() - started
        print(f"\nidle connections dropped after {waited:.1f} s")
    finally:
        for s in [idle, stalled, *silent]:
            s.close()
    assert node.orch("run", "--rm", "busybox", "echo", "after").stdout == "after\n"
