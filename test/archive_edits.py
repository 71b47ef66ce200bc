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


def with_entry(src, dst, name: str, data: bytes, compress: int = zipfile.ZIP_STORED,
               copies: int = 1) -> Path:
    """``src``'s entries, then ``name`` holding ``data`` listed ``copies`` times (zipfile writes
    a name twice with a warning): archives whose directory claims more than the file holds."""
    import warnings
    src, dst = Path(src), Path(dst)
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for info in old.infolist():
            new.writestr(info, old.read(info))
        for _ in range(copies):
            new.writestr(zipfile.ZipInfo(name), data, compress_type=compress)
    return dst
