"""Byte-level pieces shared by the container's index and the packed-token payloads: canonical
unsigned LEB128 varints and a bounds-checked reader whose failures are FormatErrors."""

from __future__ import annotations

from vtcodec.errors import FormatError


def uvarint(value: int) -> bytes:
    """Unsigned LEB128 (as in protobuf): 7 bits per byte, least significant group first."""
    if value < 0:
        raise ValueError(f"uvarint of a negative number, {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Cursor:
    """Reads fields from a buffer, failing with a FormatError on overrun; `kind` names what is
    read in the messages ("packed tokens", ".vtk index")."""

    def __init__(self, buf: memoryview, kind: str = "packed tokens"):
        self.buf = buf
        self.pos = 0
        self.kind = kind

    def take(self, n: int, what: str) -> memoryview:
        if self.pos + n > len(self.buf):
            raise FormatError(
                f"truncated {self.kind}: reading {what}, expected {n} bytes, "
                f"got {len(self.buf) - self.pos}"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def uvarints(self, n: int, what: str, limit: int = 1 << 32) -> list[int]:
        """n canonical uvarints (at most 5 bytes; a multi-byte one does not end in 0x00), each < limit."""
        out = []
        for _ in range(n):
            value = 0
            for i in range(5):
                byte = self.u8(what)
                value |= (byte & 0x7F) << (7 * i)
                if not byte & 0x80:
                    break
            else:
                raise FormatError(f"corrupt {self.kind}: {what}: varint longer than 5 bytes")
            if (i and byte == 0) or value >= limit:
                raise FormatError(f"corrupt {self.kind}: {what}: non-canonical or oversized varint {value}")
            out.append(value)
        return out
