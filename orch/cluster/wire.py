"""Framed JSON messages over a byte stream: the cluster session's wire format.

A frame is a 4-byte big-endian length, then that many bytes of UTF-8 JSON (one object). A
stream (TCP with TLS, in the cluster) has no message boundaries of its own, so the length
says where one ends. The reader refuses a frame longer than its bound before reading it:
a peer cannot make the other side hold more than that, whatever it announces.

Senders keep messages under the bound by batching (assignments and status reports go in
chunks); one message is one JSON object with an "op".
"""

from __future__ import annotations

import json
import struct

import trio

from orch.errors import InvalidArgument

HEADER = struct.Struct(">I")
MAX_FRAME = 4 * 1024 * 1024


class FrameError(InvalidArgument):
    """The peer broke the framing: too long, not JSON, not an object. The session ends."""


class Framed:
    """One side of a framed session over a trio Stream (a trio.SSLStream in the cluster)."""

    def __init__(self, stream: trio.abc.Stream, max_frame: int = MAX_FRAME):
        self.stream = stream
        self.max_frame = max_frame
        self._buf = bytearray()
        self._send_lock = trio.Lock()

    async def send(self, msg: dict) -> None:
        data = json.dumps(msg, separators=(",", ":")).encode()
        if len(data) > self.max_frame:
            raise FrameError(f"a message of {len(data)} bytes is over the session's limit of {self.max_frame}; send it in batches")
        # Two tasks may send on one session (heartbeats beside status reports): one frame at a time.
        async with self._send_lock:
            await self.stream.send_all(HEADER.pack(len(data)) + data)

    async def receive(self) -> dict | None:
        """The next message, or None when the peer closed the stream between frames."""
        header = await self._read(HEADER.size, eof_ok=True)
        if header is None:
            return None
        (size,) = HEADER.unpack(header)
        if size > self.max_frame:
            raise FrameError(f"the peer announced a message of {size} bytes, over the limit of {self.max_frame}")
        body = await self._read(size, eof_ok=False)
        try:
            msg = json.loads(body)
        except ValueError as err:
            raise FrameError(f"the peer sent a frame that is not JSON: {err}") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
            raise FrameError("the peer sent a message without an \"op\"")
        return msg

    async def _read(self, n: int, *, eof_ok: bool) -> bytes | None:
        while len(self._buf) < n:
            chunk = await self.stream.receive_some(max(65536, n - len(self._buf)))
            if not chunk:
                if eof_ok and not self._buf:
                    return None
                raise FrameError("the peer closed the session in the middle of a message")
            self._buf += chunk
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def aclose(self) -> None:
        await self.stream.aclose()
