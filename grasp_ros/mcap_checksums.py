"""CRC-32 checksums of MCAP files: written into the bags this package records, checked on reading.

MCAP carries three optional CRC-32s (0: not computed): each chunk's, over its uncompressed
records; the Data End record's, over the whole data section; the footer's, over the summary
section up to the footer's own CRC field (https://mcap.dev/spec). ``ros2 bag record``'s MCAP
writer computes the chunks' and the summary's by default; the ``rosbags`` writer this package
records with writes none, and without them a flipped byte inside a message replays as another
camera frame: a command "difference" that is really a damaged file. ``rosbags`` checks a
chunk's CRC where there is one; the data section's covers what lies outside the chunks as well:
the schemas, the channels and the metadata record holding the controller's parameters, which
decide what a replay runs.

The data section's CRC runs from the file's first byte (the magic and header included) to the
Data End record, as the reference reader checks it.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Iterator

MAGIC = b"\x89MCAP0\r\n"
CHUNK, DATA_END, FOOTER = 0x06, 0x0F, 0x02
FOOTER_SIZE = 1 + 8 + 20           # opcode, length, summary_start, summary_offset_start, crc
CHUNK_CRC_AT = 9 + 24              # from a chunk record's start: its uncompressed_crc field
BLOCK = 1 << 20


class BagDamaged(ValueError):
    """An MCAP file whose structure or checksums say it was cut short or changed (the message
    starts with the file's name)."""


def mcap_files(bag: Path) -> list[Path]:
    """The MCAP files of ``bag``: the file itself, or those in a rosbag2 folder."""
    bag = Path(bag)
    if bag.is_file():
        return [bag] if bag.suffix == ".mcap" else []
    return sorted(bag.glob("*.mcap")) if bag.is_dir() else []


def add_checksums(path: Path) -> None:
    """Write the CRCs of every chunk, the data section and the summary into ``path`` in place
    (only those fields change; the file must be a complete MCAP with a Data End record). A CRC
    that happens to be 0 reads as "not computed" (one in 2^32): that one goes unchecked."""
    with open(path, "r+b") as f:
        data_end, chunks = _data_section(f, path)
        for start, length in chunks:
            records, _ = _chunk_records(f, start, length, path)
            _write_u32(f, start + CHUNK_CRC_AT, zlib.crc32(records))
        _write_u32(f, data_end + 9, _crc_of(f, 0, data_end))
        footer, summary_from = _footer(f, path)
        _write_u32(f, footer + FOOTER_SIZE - 4, _crc_of(f, summary_from, footer + FOOTER_SIZE - 4))


def add_bag_checksums(bag: Path) -> None:
    """``add_checksums`` for every MCAP file of the bag ``bag`` (a folder or a file)."""
    for path in mcap_files(bag):
        add_checksums(path)


def check_checksums(path: Path) -> int:
    """Raise BagDamaged when the data section's or the summary's CRC that ``path`` carries does
    not match its bytes, naming where; return how many CRCs a read of the file checks: those
    two, or without the data section's, the chunks' that ``rosbags`` checks as it reads them
    (0: the file carries none, and damage inside a message cannot be seen)."""
    with open(path, "rb") as f:
        checked = 0
        data_end, chunks = _data_section(f, path)
        stated = _read_u32(f, data_end + 9, path)
        if stated:
            checked += 1
            if _crc_of(f, 0, data_end) != stated:
                raise BagDamaged(f"{path.name}: damaged: the data section (bytes 0-{data_end}) fails its "
                                 f"CRC-32; {_where(f, chunks, path)}")
        else:
            # No CRC over the whole (ros2 bag record's default): the chunks' own, which rosbags'
            # reader checks as it decompresses each chunk; a second pass over a robot's
            # gigabytes here would double the reading.
            checked += sum(1 for start, _ in chunks if _read_u32(f, start + CHUNK_CRC_AT, path))
        footer, summary_from = _footer(f, path)
        stated = _read_u32(f, footer + FOOTER_SIZE - 4, path)
        if stated:
            checked += 1
            if _crc_of(f, summary_from, footer + FOOTER_SIZE - 4) != stated:
                raise BagDamaged(f"{path.name}: damaged: the summary section (bytes {summary_from}-"
                                 f"{footer + FOOTER_SIZE - 4}, the index of chunks, channels and "
                                 "statistics) fails its CRC-32")
        return checked


def check_bag_checksums(bag: Path) -> int:
    """``check_checksums`` for every MCAP file of the bag ``bag``: the CRCs a read checks, in all
    (0 for a sqlite3 bag)."""
    return sum(check_checksums(path) for path in mcap_files(bag))


def _data_section(f, path: Path) -> tuple[int, list[tuple[int, int]]]:
    """The Data End record's offset, and each chunk's (start, content length) before it."""
    chunks = []
    for opcode, start, length in _records(f, path):
        if opcode == CHUNK:
            chunks.append((start, length))
        elif opcode == DATA_END:
            return start, chunks
    raise BagDamaged(f"{path.name}: truncated: the data section has no end (no Data End record)")


def _where(f, chunks: list[tuple[int, int]], path: Path) -> str:
    """Which chunk fails its own CRC, or that the damage lies outside the chunks."""
    for start, length in chunks:
        records, stated = _chunk_records(f, start, length, path)
        if stated and zlib.crc32(records) != stated:
            return _failing(start, length)
    return ("no chunk fails its own: the damage is outside the messages (the header, a schema, a "
            "channel, the metadata with the recorded parameters, or a message index)")


def _failing(start: int, length: int) -> str:
    return (f"the chunk at byte {start} ({length} bytes) fails its own CRC-32: a record in it (a "
            "message, or a schema or channel) changed")


def _records(f, path: Path) -> Iterator[tuple[int, int, int]]:
    """(opcode, start, content length) of each record of the data section, from the header on."""
    f.seek(0, 2)
    size = f.tell()
    f.seek(0)
    if _read(f, len(MAGIC), path) != MAGIC:
        raise BagDamaged(f"{path.name}: not an MCAP file (its first bytes are not the MCAP magic)")
    at = len(MAGIC)
    while at < size:
        f.seek(at)
        opcode, length = struct.unpack("<BQ", _read(f, 9, path))
        if at + 9 + length > size:
            raise BagDamaged(f"{path.name}: truncated or damaged: the record at byte {at} (opcode "
                             f"{opcode:#04x}) runs {at + 9 + length - size} bytes past the end of the file")
        yield opcode, at, length
        at += 9 + length


def _chunk_records(f, start: int, length: int, path: Path) -> tuple[bytes, int]:
    """A chunk's records, uncompressed, and the CRC it states."""
    f.seek(start + 9)
    body = _read(f, length, path)
    try:
        _, _, size, crc, name_len = struct.unpack_from("<QQQII", body)
        compression = body[32:32 + name_len].decode("utf-8")
        (stored,) = struct.unpack_from("<Q", body, 32 + name_len)
        return _decompress(compression, body[40 + name_len:40 + name_len + stored]), crc
    except Exception as exc:  # noqa: BLE001 -- struct, utf-8 and each codec raise their own kinds
        raise BagDamaged(f"{path.name}: damaged: the chunk at byte {start} does not parse or "
                         f"decompress ({type(exc).__name__}: {exc})") from exc


def _decompress(compression: str, data: bytes) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        try:
            from compression import zstd
        except ImportError:
            from backports import zstd
        return zstd.decompress(data)
    if compression == "lz4":
        from lz4.frame import decompress
        return decompress(data)
    raise ValueError(f"unknown chunk compression {compression!r}")


def _footer(f, path: Path) -> tuple[int, int]:
    """The footer record's offset, and where the summary's CRC starts (the summary section, or
    the footer itself when there is none)."""
    f.seek(0, 2)
    footer = f.tell() - len(MAGIC) - FOOTER_SIZE
    if footer < len(MAGIC):
        raise BagDamaged(f"{path.name}: truncated: too short for an MCAP footer")
    f.seek(footer)
    opcode, length, summary_start, _ = struct.unpack("<BQQQ", _read(f, 25, path))
    if opcode != FOOTER or length != 20 or _read(f, 4 + len(MAGIC), path)[4:] != MAGIC:
        raise BagDamaged(f"{path.name}: truncated: it does not end in an MCAP footer and magic")
    if summary_start > footer:
        raise BagDamaged(f"{path.name}: damaged: its footer puts the summary at byte {summary_start}, "
                         f"past the footer itself ({footer})")
    return footer, (summary_start or footer)


def _read_u32(f, at: int, path: Path) -> int:
    f.seek(at)
    return struct.unpack("<I", _read(f, 4, path))[0]


def _write_u32(f, at: int, value: int) -> None:
    f.seek(at)   # after the value is computed: computing it moves the file position
    f.write(struct.pack("<I", value))


def _crc_of(f, start: int, end: int) -> int:
    f.seek(start)
    crc, left = 0, end - start
    while left > 0:
        block = f.read(min(BLOCK, left))
        if not block:
            break
        crc, left = zlib.crc32(block, crc), left - len(block)
    return crc


def _read(f, n: int, path: Path) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise BagDamaged(f"{path.name}: truncated: {n} bytes wanted at byte {f.tell() - len(data)}, "
                         f"{len(data)} left")
    return data

