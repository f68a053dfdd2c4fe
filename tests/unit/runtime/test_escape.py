"""docker's detach keys (orch/node/runtime/escape.py): the --detach-keys text as moby/term's
ToBytes reads it, and the input scan the supervisor runs an attached client's keys through."""

import pytest

from orch.node.runtime.escape import DEFAULT, BadKeys, Escape, parse_detach_keys


@pytest.mark.parametrize("text,keys", [
    (DEFAULT, b"\x10\x11"), ("ctrl-a", b"\x01"), ("ctrl-@,ctrl-_", b"\x00\x1f"), ("ctrl-[,ctrl-\\,ctrl-],ctrl-^", b"\x1b\x1c\x1d\x1e"),
    ("a,b", b"ab"), ("ctrl-P,ctrl-Q", b"\x10\x11"), ("ctrl-z,x", b"\x1ax"),
])
def test_keys(text, keys):
    assert parse_detach_keys(text) == keys


@pytest.mark.parametrize("text", ["foo", "ctrl-", "ctrl-1", "ctrl-ab", "a,,b"])
def test_bad_keys(text):
    with pytest.raises(BadKeys, match=r"Invalid detach keys \(.*\) provided"):
        parse_detach_keys(text)


def feed_all(keys: bytes, reads: list[bytes]):
    e = Escape(keys)
    out, detached = b"", False
    for data in reads:
        got, detached = e.feed(data)
        out += got
        if detached:
            break
    return out, detached


@pytest.mark.parametrize("reads,out,detached", [
    ([b"ls\r"], b"ls\r", False),
    ([b"\x10", b"\x11"], b"", True),  # typed one key a read, as a terminal sends them
    ([b"echo\r\x10\x11"], b"echo\r", True),  # in one read (a paste)
    ([b"\x10", b"x"], b"\x10x", False),  # a sequence broken off is forwarded as typed
    ([b"\x10\x10\x11"], b"\x10", True),  # a repeated first key starts the sequence over
    ([b"\x10", b"\x11rest"], b"", True),  # what follows the keys is dropped with the session
    ([b"a\x10"], b"a", False),  # held back until the next read says what it was
])
def test_scan(reads, out, detached):
    assert feed_all(b"\x10\x11", reads) == (out, detached)


def test_a_one_key_sequence_and_none():
    assert feed_all(b"\x01", [b"ab\x01c"]) == (b"ab", True)
    assert feed_all(b"", [b"\x10\x11"]) == (b"\x10\x11", False)
