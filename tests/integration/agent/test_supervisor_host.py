"""The supervisor's loop with plain host processes (HostRuntime): start, logs, exit records,
events, attach, exec, kill, a pty. The kernel side is tested with real containers elsewhere."""

import json
import os
import pty
import signal
import subprocess
import sys
import time

import pytest

from orch.node.runtime import superproto as proto
from orch.node.runtime.containerlog import read_entries


@pytest.fixture
def sup(tmp_path):
    sock = str(tmp_path / "run" / "supervisor.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orch.node.runtime.supervisor", "--socket", sock, "--host-runtime"],
        env=dict(os.environ, PYTHONPATH=os.getcwd()), stderr=subprocess.PIPE,
    )
    try:
        for _ in range(500):
            if os.path.exists(sock):
                break
            time.sleep(0.01)
        yield sock, tmp_path
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stderr.close()


def make(tmp_path, cid, args, **extra):
    d = tmp_path / "containers" / cid
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(dict(args=args, **extra)))
    return str(d / "config.json")


def subscribe(sock):
    s = proto.connect(sock, timeout=10)
    proto.send(s, {"op": "subscribe"})
    assert proto.recv(s)[0]["ok"]
    return s


def test_start_logs_exit_record_and_events(sup):
    sock, tmp = sup
    events = subscribe(sock)
    cfg = make(tmp, "c1", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert proto.call(sock, {"op": "start", "id": "c1", "config": cfg})["pid"] > 0
    started, _ = proto.recv(events)
    exited, _ = proto.recv(events)
    assert (started["event"], exited["event"], exited["exit_code"]) == ("started", "exited", 3)
    record = json.loads((tmp / "containers/c1/exit.json").read_text())
    assert record["exit_code"] == 3 and record["oom_killed"] is False
    logs = read_entries(str(tmp / "containers/c1/container.log"))
    assert sorted((e["stream"], e["log"]) for e in logs) == [("stderr", "err\n"), ("stdout", "out\n")]
    assert proto.call(sock, {"op": "list"})["containers"] == []
    events.close()


def test_attached_client_gets_output_and_exit_code(sup):
    sock, tmp = sup
    cfg = make(tmp, "c2", ["sh", "-c", "read x; echo got $x; exit 7"])
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    s = proto.connect(sock, timeout=10)
    proto.send(s, {"op": "start", "id": "c2", "config": cfg, "attach": ["stdin", "stdout", "stderr"]}, [in_r, out_w, out_w])
    assert proto.recv(s)[0]["ok"]
    os.close(in_r), os.close(out_w)
    os.write(in_w, b"hello\n")
    os.close(in_w)
    event, _ = proto.recv(s)
    assert event == dict(event, event="exit", exit_code=7)
    assert os.read(out_r, 100) == b"got hello\n"
    s.close()


def test_kill_gives_128_plus_signal_and_conflicts(sup):
    sock, tmp = sup
    cfg = make(tmp, "c3", ["sleep", "100"])
    events = subscribe(sock)
    proto.call(sock, {"op": "start", "id": "c3", "config": cfg})
    proto.recv(events)
    with pytest.raises(Exception, match="already running"):
        proto.call(sock, {"op": "start", "id": "c3", "config": cfg})
    assert [c["id"] for c in proto.call(sock, {"op": "list"})["containers"]] == ["c3"]
    proto.call(sock, {"op": "kill", "id": "c3", "signal": signal.SIGTERM})
    assert proto.recv(events)[0]["exit_code"] == 128 + signal.SIGTERM
    with pytest.raises(Exception, match="not running"):
        proto.call(sock, {"op": "kill", "id": "c3", "signal": 9})
    events.close()


def test_exec_and_tty(sup):
    sock, tmp = sup
    cfg = make(tmp, "c4", ["sh"], terminal=True)
    master, slave = pty.openpty()
    s = proto.connect(sock, timeout=10)
    proto.send(s, {"op": "start", "id": "c4", "config": cfg, "attach": ["tty"], "tty_size": [30, 100]}, [slave])
    assert proto.recv(s)[0]["ok"]
    os.close(slave)
    out_r, out_w = os.pipe()
    got = proto.call(sock, {"op": "exec", "id": "c4", "process": {"args": ["echo", "from-exec"]}, "detach": True, "attach": ["stdout"]}, [out_w])
    os.close(out_w)
    assert got["pid"] > 0 and os.read(out_r, 100) == b"from-exec\n"
    os.write(master, b"stty size; exit 5\n")
    event, _ = proto.recv(s)
    assert event["exit_code"] == 5
    logged = "".join(e["log"] for e in read_entries(str(tmp / "containers/c4/container.log")))
    assert "30 100" in logged
    s.close()
    os.close(master)
