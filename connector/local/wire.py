"""A small protobuf wire-format decoder (proto3, no schema, no `protobuf` package).

Only what the `.wandb` reader needs: varints (plain, signed int64, zigzag), fixed 32/64-bit
values, length-delimited fields and a generic field iterator. Messages are decoded by field
number in `connector.local.records`; unknown fields are skipped, as protobuf requires.

>>> read_varint(b"\\xac\\x02", 0)
(300, 2)
>>> zigzag(3), to_int64(2**64 - 1)
(-2, -1)
>>> [(f, w, bytes(v) if w == LEN else v) for f, w, v in iter_fields(b"\\x08\\x01\\x12\\x02hi")]
[(1, 0, 1), (2, 2, b'hi')]
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

VARINT = 0
I64 = 1
LEN = 2
I32 = 5  # 3 and 4 (groups) are deprecated; `skip_field` refuses them

_DOUBLE = struct.Struct("<d")


class WireError(ValueError):
    """The bytes are not a valid protobuf encoding (truncated field, bad wire type, ...)."""


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint at `pos`; return ``(value, new_pos)``.

    >>> read_varint(b"\\x96\\x01", 0)
    (150, 2)
    """
    try:
        b = buf[pos]
        if b < 0x80:
            return b, pos + 1
        result = b & 0x7F
        shift = 7
        pos += 1
        while True:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result, pos
            shift += 7
            if shift >= 70:
                raise WireError(f"varint longer than 10 bytes at offset {pos}")
    except IndexError:
        raise WireError(f"truncated varint at offset {pos}") from None


def to_int64(value: int) -> int:
    """Reinterpret an unsigned 64-bit varint as a signed `int64`/`int32` (two's complement)."""
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def zigzag(value: int) -> int:
    """Decode a zigzag-encoded `sint32`/`sint64` varint."""
    return (value >> 1) ^ -(value & 1)


def read_double(buf: bytes | memoryview, pos: int) -> float:
    """The little-endian IEEE double at `pos` (a `double` field's 8 bytes)."""
    return _DOUBLE.unpack_from(buf, pos)[0]


def skip_field(buf: bytes | memoryview, pos: int, wire_type: int, end: int) -> int:
    """Return the position just after a field's value whose tag has already been read."""
    if wire_type == VARINT:
        _, pos = read_varint(buf, pos)
    elif wire_type == LEN:
        n, pos = read_varint(buf, pos)
        pos += n
    elif wire_type == I64:
        pos += 8
    elif wire_type == I32:
        pos += 4
    else:
        raise WireError(f"unsupported wire type {wire_type} at offset {pos}")
    if pos > end:
        raise WireError(f"field runs past the end of its message (offset {pos} > {end})")
    return pos


def iter_fields(
    buf: bytes | memoryview, start: int = 0, end: int | None = None
) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field_number, wire_type, value)`` for each field of one message.

    `value` is an int for VARINT, I64 and I32 fields (the raw unsigned bits; see `to_int64`,
    `zigzag`, `read_double`), and a zero-copy `memoryview` for LEN fields.
    """
    view = memoryview(buf)
    if end is None:
        end = len(view)
    pos = start
    while pos < end:
        key, pos = read_varint(view, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise WireError(f"field number 0 at offset {pos}")
        if wire == VARINT:
            value, pos = read_varint(view, pos)
            yield field, wire, value
        elif wire == LEN:
            n, pos = read_varint(view, pos)
            if pos + n > end:
                raise WireError(f"length-delimited field {field} runs past its message at offset {pos}")
            yield field, wire, view[pos : pos + n]
            pos += n
        elif wire == I64:
            if pos + 8 > end:
                raise WireError(f"fixed64 field {field} truncated at offset {pos}")
            yield field, wire, int.from_bytes(view[pos : pos + 8], "little")
            pos += 8
        elif wire == I32:
            if pos + 4 > end:
                raise WireError(f"fixed32 field {field} truncated at offset {pos}")
            yield field, wire, int.from_bytes(view[pos : pos + 4], "little")
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire} for field {field} at offset {pos}")
