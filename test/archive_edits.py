"""A torch zip file with one byte changed inside an entry's data, as a bad copy leaves it."""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path


def damaged_copy(src, dst) -> Path:
    """``src`` written to ``dst`` with one bit changed in the middle of its largest entry's
    data (a tensor's bytes, for a checkpoint): the zip structure intact, only that entry's CRC
    wrong."""
    src, dst = Path(src), Path(dst)
    raw = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as archive:
        entry = max(archive.infolist(), key=lambda info: info.compress_size)
    name_len, extra_len = struct.unpack_from("<HH", raw, entry.header_offset + 26)
    data = entry.header_offset + 30 + name_len + extra_len
    raw[data + entry.compress_size // 2] ^= 0x01
    dst.write_bytes(bytes(raw))
    return dst


def unreadable_copy(src, dst) -> Path:
    """``src`` with its first central-directory entry naming a compression method zipfile does
    not know (99): the directory itself damaged."""
    src, dst = Path(src), Path(dst)
    raw = bytearray(src.read_bytes())
    entry = raw.index(b"PK\x01\x02")
    raw[entry + 10:entry + 12] = struct.pack("<H", 99)
    dst.write_bytes(bytes(raw))
    return dst
