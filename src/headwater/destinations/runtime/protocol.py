"""Frames between the pool and ``runtime.js``: a 4-byte big-endian length, then UTF-8 JSON.

JSON rather than msgpack: Node parses it natively and the runtime needs no extra npm package.
"""

from __future__ import annotations

import asyncio
import struct

_HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024  # a runaway length means a broken stream, not a big answer


def encode_frame(body: bytes) -> bytes:
    return _HEADER.pack(len(body)) + body


class FrameReader:
    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream

    async def read(self) -> bytes | None:
        """The next frame's body; None at a clean end of stream."""
        try:
            header = await self.stream.readexactly(4)
        except asyncio.IncompleteReadError as error:
            if error.partial:
                raise
            return None
        (length,) = _HEADER.unpack(header)
        if length > MAX_FRAME:
            raise ValueError(f"frame of {length} bytes")
        return await self.stream.readexactly(length)
