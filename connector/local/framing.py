"""`.wandb` framing: file header, 32 KiB blocks, CRC-checked chunks -> record payloads.

The format (LevelDB-log style, with plain CRC-32)::

    header   ":W&B" | magic u16 LE 0xBEE1 | version u8 (0)            7 bytes at offset 0
    blocks   32768 bytes, aligned at offset 0; chunks never cross a block boundary
    chunk    crc u32 LE | length u16 LE | type u8 | data[length]
             type FULL=1 FIRST=2 MIDDLE=3 LAST=4; crc = zlib.crc32(type byte + data)
    padding  fewer than 7 bytes left in a block; an all-zero chunk header = rest of block zeroed

A record is one FULL chunk or FIRST + MIDDLE* + LAST. Rules of this reader:

* a file still being written (EOF inside a chunk header, a chunk's data, or a FIRST..LAST
  sequence) ends silently after the last complete record;
* a bad CRC, a chunk crossing its block, an unknown chunk type, a broken FIRST/MIDDLE/LAST
  sequence before EOF, or a record longer than `limits.MAX_RECORD_BYTES` (64 MiB; its chunks are
  never all held in memory) raises `LocalFileError` naming the file and byte offset. With
  ``skip_damaged=True`` the reader warns (`DamagedRecordWarning`: file, offset, bytes skipped),
  skips to the next block, drops orphan MIDDLE/LAST chunks there, and goes on.

>>> import io
>>> data = HEADER + encode_chunk(FULL, b"payload")
>>> [(off, bytes(p)) for off, p in iter_payloads(io.BytesIO(data), name="demo.wandb")]
[(7, b'payload')]
"""

from __future__ import annotations

import os
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from ..errors import LocalFileError
from .limits import MAX_RECORD_BYTES

MAGIC = 0xBEE1
VERSION = 0
HEADER = b":W&B" + MAGIC.to_bytes(2, "little") + bytes([VERSION])
BLOCK = 32768
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4

#: bytes read per I/O call; a multiple of BLOCK so that no chunk straddles two reads
WINDOW = BLOCK * 256


class DamagedRecordWarning(UserWarning):
    """Damaged bytes in a `.wandb` file were skipped (``skip_damaged=True``)."""


def encode_chunk(chunk_type: int, data: bytes) -> bytes:
    """One chunk (header + data), as a writer would emit it (used by tests and examples)."""
    crc = zlib.crc32(data, zlib.crc32(bytes([chunk_type])))
    return crc.to_bytes(4, "little") + len(data).to_bytes(2, "little") + bytes([chunk_type]) + data


def check_header(head: bytes, name: str) -> None:
    """Raise `LocalFileError` unless `head` starts with a valid `.wandb` header."""
    if len(head) < CHUNK_HEADER:
        raise LocalFileError(f"{name}: not a .wandb file (only {len(head)} bytes, no header)")
    if head[:4] != b":W&B":
        raise LocalFileError(f"{name}: not a .wandb file (header {bytes(head[:7])!r})")
    magic = int.from_bytes(head[4:6], "little")
    if magic != MAGIC:
        raise LocalFileError(f"{name}: bad .wandb header magic 0x{magic:04X} (expected 0xBEE1)")
    if head[6] != VERSION:
        raise LocalFileError(f"{name}: unsupported .wandb version {head[6]} (expected 0)")


def iter_file_payloads(path: str | os.PathLike[str], *, skip_damaged: bool = False) -> Iterator[tuple[int, bytes]]:
    """Yield ``(byte_offset, payload)`` for every complete record of the `.wandb` file at `path`.

    >>> # for offset, payload in iter_file_payloads("run-abc.wandb"): ...
    """
    with open(path, "rb") as f:
        yield from iter_payloads(f, name=str(Path(path)), skip_damaged=skip_damaged)


def iter_payloads(
    f: BinaryIO, *, name: str = "<stream>", skip_damaged: bool = False
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(byte_offset, payload)`` for every complete record of an open `.wandb` stream.

    `byte_offset` is the file offset of the record's first chunk.
    """
    window = f.read(WINDOW)
    check_header(window, name)
    crc32 = zlib.crc32
    base = 0  # file offset of window[0]
    pos = CHUNK_HEADER  # position inside window
    parts: list[bytes] | None = None  # chunks of a FIRST..LAST record in progress
    rec_start = 0
    rec_len = 0  # bytes in `parts`
    skip_from = -1  # file offset where skipped (damaged) bytes began, -1 when not skipping
    skip_at = 0  # offset of the damage that started the skip

    while True:
        n = len(window)
        final = n < WINDOW
        mv = memoryview(window)
        while True:
            left = BLOCK - (pos & (BLOCK - 1))
            if left < CHUNK_HEADER:
                pos += left
                continue
            if pos + CHUNK_HEADER > n:
                break
            length = window[pos + 4] | (window[pos + 5] << 8)
            ctype = window[pos + 6]
            dend = pos + CHUNK_HEADER + length
            problem = None
            if ctype == 0 and length == 0 and window[pos : pos + 4] == b"\0\0\0\0":
                pos += left  # zeroed rest of block
                continue
            if CHUNK_HEADER + length > left:
                problem = f"chunk of {length} bytes crosses its 32 KiB block"
            elif dend > n:
                break  # partial chunk: at EOF this is a file still being written
            elif crc32(mv[pos + 6 : dend]) != int.from_bytes(window[pos : pos + 4], "little"):
                problem = "CRC mismatch"
            elif ctype in (FULL, FIRST):
                if skip_from >= 0:
                    _warn_skipped(name, skip_at, base + pos - skip_from)
                    skip_from = -1
                if parts is not None:
                    problem = "a new record starts before the previous one's LAST chunk"
                elif ctype == FULL:
                    yield base + pos, window[pos + CHUNK_HEADER : dend]
                else:
                    parts = [window[pos + CHUNK_HEADER : dend]]
                    rec_start = base + pos
                    rec_len = length
            elif ctype in (MIDDLE, LAST):
                if skip_from >= 0:
                    pass  # orphan continuation after a skip: part of the damaged range
                elif parts is None:
                    problem = f"{'MIDDLE' if ctype == MIDDLE else 'LAST'} chunk without a FIRST chunk"
                elif rec_len + length > MAX_RECORD_BYTES:
                    problem = (
                        f"the record starting at byte offset {rec_start} is longer than "
                        f"{MAX_RECORD_BYTES} bytes (limit MAX_RECORD_BYTES)"
                    )
                else:
                    rec_len += length
                    parts.append(window[pos + CHUNK_HEADER : dend])
                    if ctype == LAST:
                        yield rec_start, b"".join(parts)
                        parts = None
            else:
                problem = f"unknown chunk type {ctype}"

            if problem is None:
                pos = dend
                continue
            at = base + pos
            if not skip_damaged:
                raise LocalFileError(f"{name}: damaged record at byte offset {at}: {problem}")
            if skip_from < 0:
                skip_from = rec_start if parts is not None else at
                skip_at = at
            parts = None
            pos += left  # resume at the next block

        if final:
            break
        # keep the unread tail (a block is never split across windows, so this is < 7 bytes or 0)
        consumed = min(pos, n)
        base += consumed
        pos -= consumed
        window = f.read(WINDOW)
        if not window:
            break
    if skip_from >= 0:
        _warn_skipped(name, skip_at, f.tell() - skip_from)


def _warn_skipped(name: str, offset: int, nbytes: int) -> None:
    warnings.warn(
        DamagedRecordWarning(
            f"{name}: damaged record at byte offset {offset}; skipped {nbytes} bytes"
        ),
        stacklevel=3,
    )


#: bytes read at once by `read_payloads_at` (records of one window usually lie in one read)
READ_AHEAD = 1 << 20


def read_payloads_at(f: BinaryIO, offsets: Sequence[int], *, name: str = "<stream>") -> list[bytes]:
    """The payloads of the records whose first chunks start at `offsets` (byte offsets that
    `iter_payloads` yielded for this file), in the order given; chunks are CRC-checked again.

    A record that is no longer there as it was read (the file was rewritten since) raises
    `LocalFileError` naming the file and the offset.

    >>> import io
    >>> data = HEADER + encode_chunk(FULL, b"one") + encode_chunk(FULL, b"two")
    >>> read_payloads_at(io.BytesIO(data), [17, 7])
    [b'two', b'one']
    """
    out: list[bytes] = []
    buf = b""
    base = 0  # file offset of buf[0]
    crc32 = zlib.crc32

    def fill(at: int, need: int) -> None:
        nonlocal buf, base
        f.seek(at)
        buf = f.read(max(need, READ_AHEAD))
        base = at

    for offset in offsets:
        pos = offset
        parts: list[bytes] | None = None
        size = 0
        while True:
            left = BLOCK - (pos & (BLOCK - 1))
            if left < CHUNK_HEADER:
                pos += left
                continue
            i = pos - base
            if i < 0 or i + CHUNK_HEADER > len(buf):
                fill(pos, CHUNK_HEADER)
                i = 0
            head = buf[i : i + CHUNK_HEADER]
            if len(head) < CHUNK_HEADER:
                raise _changed(name, offset, "ends before it")
            length = head[4] | (head[5] << 8)
            ctype = head[6]
            if ctype == 0 and length == 0 and head[:4] == b"\0\0\0\0":
                pos += left
                continue
            if i + CHUNK_HEADER + length > len(buf):
                fill(pos, CHUNK_HEADER + length)
                i = 0
            data = buf[i + CHUNK_HEADER : i + CHUNK_HEADER + length]
            if len(data) < length or CHUNK_HEADER + length > left:
                raise _changed(name, offset, "ends before it")
            if crc32(buf[i + 6 : i + CHUNK_HEADER + length]) != int.from_bytes(head[:4], "little"):
                raise _changed(name, offset, "CRC mismatch")
            if parts is None:
                if ctype == FULL:
                    out.append(data)
                    break
                if ctype != FIRST:
                    raise _changed(name, offset, f"chunk type {ctype} where a record starts")
                parts = [data]
                size = length
            elif ctype in (MIDDLE, LAST):
                size += length
                if size > MAX_RECORD_BYTES:
                    raise _changed(name, offset, "record longer than MAX_RECORD_BYTES")
                parts.append(data)
                if ctype == LAST:
                    out.append(b"".join(parts))
                    break
            else:
                raise _changed(name, offset, f"chunk type {ctype} inside a record")
            pos += CHUNK_HEADER + length
    return out


def _changed(name: str, offset: int, problem: str) -> LocalFileError:
    return LocalFileError(
        f"{name}: record at byte offset {offset} is not as it was indexed ({problem}); "
        "the file changed since it was read: read it again"
    )
