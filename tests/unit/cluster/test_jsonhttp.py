"""The streamed response's lines (etcd's watch) as the events of a response body arrive."""

import h11
import pytest

from orch.cluster import jsonhttp
from orch.cluster.jsonhttp import TransportError, _Lines


class _Events:
    """A connection that gives the events of a response body it was made with."""

    def __init__(self, *chunks: bytes):
        self.events = [h11.Data(data=c) for c in chunks] + [h11.EndOfMessage()]

    async def next_event(self):
        return self.events.pop(0)


async def lines_of(*chunks: bytes) -> list[bytes]:
    return [line async for line in _Lines(_Events(*chunks))]


async def test_lines_split_across_reads_and_joined_once():
    big = b"x" * 100_000
    chunks = [big[i:i + 7_000] for i in range(0, len(big), 7_000)]
    assert await lines_of(b'{"a":', b"1}\n{", b'"b":2}\n', *chunks, b"\n") == [b'{"a":1}', b'{"b":2}', big]


async def test_many_lines_in_one_read_blank_lines_dropped_and_the_last_without_newline_kept():
    assert await lines_of(b"one\n\ntwo\n  \nthree\nfour", b"") == [b"one", b"two", b"three", b"four"]
    assert await lines_of(b"\n", b"\n") == []


async def test_a_line_longer_than_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(jsonhttp, "MAX_LINE", 10)
    with pytest.raises(TransportError, match="larger than 10 bytes"):
        await lines_of(b"12345", b"678", b"90123")
    assert await lines_of(b"12345", b"67\n", b"8901234\n") == [b"1234567", b"8901234"]
