"""MCAP CRC-32s: written into the bags the package records, checked before any bag is read."""
from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import pytest

from grasp_ros.mcap_checksums import BagDamaged, add_checksums, check_checksums, mcap_files

BAG = Path(__file__).parent / "data" / "demo_lockstep"
MAGIC = b"\x89MCAP0\r\n"


def records(raw: bytes) -> list[tuple[int, int, int]]:
    """(opcode, start, content length) of the data section's records, written out here from
    the spec rather than through the module under test."""
    at, out = len(MAGIC), []
    while True:
        opcode, length = struct.unpack_from("<BQ", raw, at)
        out.append((opcode, at, length))
        if opcode == 0x0F:
            return out
        at += 9 + length


def flipped(raw: bytes, at: int) -> bytes:
    changed = bytearray(raw)
    changed[at] ^= 0x01
    return bytes(changed)


def test_the_shipped_bag_carries_crcs_that_match():
    data = mcap_files(BAG)[0]
    raw = data.read_bytes()
    chunks = [(s, n) for op, s, n in records(raw) if op == 0x06]
    assert chunks
    for start, _ in chunks:            # each chunk's CRC is over its (uncompressed) records
        _, _, size, crc, name = struct.unpack_from("<QQQII", raw, start + 9)
        assert name == 0 and crc == zlib.crc32(raw[start + 9 + 40:start + 9 + 40 + size]) != 0
    end = records(raw)[-1][1]           # Data End: CRC of every byte before it, magic included
    assert struct.unpack_from("<I", raw, end + 9)[0] == zlib.crc32(raw[:end])
    footer = len(raw) - len(MAGIC) - 29   # summary CRC: from the summary up to the CRC field
    summary_start = struct.unpack_from("<Q", raw, footer + 9)[0]
    assert struct.unpack_from("<I", raw, footer + 25)[0] == zlib.crc32(raw[summary_start:footer + 25])
    assert check_checksums(data) == 2   # the data section's and the summary's


@pytest.mark.parametrize("where, reason", [
    ("chunk", "fails its own CRC-32: a record in it (a message, or a schema or channel) changed"),
    ("metadata", "no chunk fails its own: the damage is outside the messages"),
    ("summary", "the summary section"),
])
def test_one_changed_bit_is_found_and_named(tmp_path, where, reason):
    raw = mcap_files(BAG)[0].read_bytes()
    listed = records(raw)
    if where == "summary":
        at = listed[-1][1] + 9 + 4 + 20            # a byte past the Data End record
    else:
        opcode = 0x06 if where == "chunk" else 0x0C
        start, length = next((s, n) for op, s, n in listed if op == opcode)
        at = start + 9 + length // 2
    damaged = tmp_path / "damaged.mcap"
    damaged.write_bytes(flipped(raw, at))
    with pytest.raises(BagDamaged, match="damaged.mcap: damaged: ") as caught:
        check_checksums(damaged)
    assert reason in str(caught.value)


def test_without_a_data_section_crc_the_reader_checks_each_chunk(tmp_path):
    """ros2 bag record's default: chunk CRCs, none over the data section. They are counted and
    left to the reader, which checks each chunk as it decompresses it (one pass over the file)."""
    from grasp_ros.replay.bag import BagError, read_recording

    bag = tmp_path / "bag"
    shutil.copytree(BAG, bag)
    data = mcap_files(bag)[0]
    raw = bytearray(data.read_bytes())
    listed = records(bytes(raw))
    end = listed[-1][1]
    raw[end + 9:end + 13] = bytes(4)              # data section CRC: 0, "not computed"
    raw[-12:-8] = bytes(4)                        # the footer's summary CRC too
    chunk, length = next((s, n) for op, s, n in listed if op == 0x06)
    data.write_bytes(bytes(raw))
    assert check_checksums(data) == len([1 for op, _, _ in listed if op == 0x06])
    data.write_bytes(flipped(bytes(raw), chunk + 9 + length // 2))
    assert check_checksums(data) > 0              # nothing over the whole to fail here
    with pytest.raises(BagError, match="Chunk checksum mismatch"):
        read_recording(bag)


def test_a_file_without_crcs_passes_and_says_none_were_checked(tmp_path):
    copy = tmp_path / "bag"
    shutil.copytree(BAG, copy)
    data = mcap_files(copy)[0]
    raw = bytearray(data.read_bytes())
    for op, start, _ in records(bytes(raw)):
        if op == 0x06:
            raw[start + 9 + 24:start + 9 + 28] = bytes(4)
        if op == 0x0F:
            raw[start + 9:start + 13] = bytes(4)
    raw[-12:-8] = bytes(4)
    data.write_bytes(bytes(raw))
    assert check_checksums(data) == 0
    add_checksums(data)                           # what the recorder does: the shipped bytes again
    assert data.read_bytes() == mcap_files(BAG)[0].read_bytes()


def test_a_damaged_compressed_chunk_is_named(tmp_path):
    """ros2 bag record's MCAP storage compresses chunks (zstd, or lz4); a chunk's CRC is its
    records', uncompressed."""
    try:
        from compression import zstd
    except ImportError:
        from backports import zstd
    inner = b"\x05" + struct.pack("<Q", 22) + bytes(22)          # one empty message record
    packed = zstd.compress(inner)
    body = struct.pack("<QQQI", 0, 0, len(inner), zlib.crc32(inner)) + struct.pack("<I", 4) + b"zstd"
    body += struct.pack("<Q", len(packed)) + packed
    header = struct.pack("<II", 0, 0)
    data = (MAGIC + b"\x01" + struct.pack("<Q", len(header)) + header
            + b"\x06" + struct.pack("<Q", len(body)) + body)
    data += b"\x0f" + struct.pack("<QI", 4, zlib.crc32(data))
    footer = b"\x02" + struct.pack("<QQQI", 20, 0, 0, 0) + MAGIC
    path = tmp_path / "zstd.mcap"
    path.write_bytes(data + footer)
    assert check_checksums(path) == 1             # the data section's
    chunk = len(MAGIC) + 9 + len(header)
    path.write_bytes(flipped(data + footer, chunk + 9 + 24))      # the stated CRC itself
    with pytest.raises(BagDamaged, match="fails its own CRC-32"):
        check_checksums(path)
    path.write_bytes(flipped(data + footer, chunk + 9 + len(body) - 2))   # the compressed bytes
    with pytest.raises(BagDamaged, match="does not parse or decompress|fails its own CRC-32"):
        check_checksums(path)


def test_truncated_and_foreign_files_are_named(tmp_path):
    raw = mcap_files(BAG)[0].read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(BagDamaged, match="cut.mcap: truncated"):
        check_checksums(cut)
    other = tmp_path / "other.mcap"
    other.write_bytes(b"SQLite format 3\0" + bytes(100))
    with pytest.raises(BagDamaged, match="other.mcap: not an MCAP file"):
        check_checksums(other)
