"""docker's stream frames and detach keys (orch/dockerapi/streams.py)."""

import pytest

from orch.dockerapi.streams import DEFAULT_DETACH_KEYS, FRAME_MAX, Session, frame, parse_detach_keys


def test_frames_are_stdcopys():
    assert frame("stdout", b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert frame("stderr", b"") == b""
    big = frame("stderr", b"x" * (FRAME_MAX + 1))
    assert big[:8] == b"\x02\x00\x00\x00" + FRAME_MAX.to_bytes(4, "big")
    assert big[8 + FRAME_MAX:8 + FRAME_MAX + 8] == b"\x02\x00\x00\x00\x00\x00\x00\x01"


@pytest.mark.parametrize("text, keys", [
    (None, b"\x10\x11"), ("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-@", b"\x00"), ("a,ctrl-c", b"a\x03"), ("", b""),
])
def test_detach_keys(text, keys):
    assert parse_detach_keys(text) == keys


@pytest.mark.parametrize("text", ["ctrl-", "ctrl-1", "ab"])
def test_bad_detach_keys(text):
    with pytest.raises(ValueError):
        parse_detach_keys(text)


def session(keys=DEFAULT_DETACH_KEYS) -> Session:
    return Session(None, tty=True, stdout=True, stderr=True, stdin=True, detach_keys=keys)


def test_the_detach_sequence_is_found_across_reads_and_held_back():
    s = session()
    assert s.split_detach(b"ls\r") == (b"ls\r", False)
    assert s.split_detach(b"a\x10") == (b"a", False)  # ctrl-p held back: it may begin the sequence
    assert s.split_detach(b"\x11rest") == (b"", True)


def test_a_broken_sequence_passes_on_what_was_held():
    s = session()
    assert s.split_detach(b"\x10") == (b"", False)
    assert s.split_detach(b"x") == (b"\x10x", False)
    assert s.split_detach(b"\x10\x10\x11") == (b"\x10", True)


def test_no_detach_keys_passes_everything():
    assert session(b"").split_detach(b"\x10\x11") == (b"\x10\x11", False)
