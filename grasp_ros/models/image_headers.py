"""The pixel size a compressed image claims, read from its header before anything is decoded.

A few hundred bytes of JPEG or PNG can claim 20000 x 20000 pixels, and decoding them takes
gigabytes and seconds: the claim is checked first (``preprocess.decode_compressed``). Read here:
the containers image_transport's compressed plugin writes, JPEG, PNG and TIFF. Anything else is
refused, as is a header that does not say its size. Every refusal is a ``ValueError``.
"""
from __future__ import annotations

import struct

_PNG = b"\x89PNG\r\n\x1a\n"
_TIFF = {b"II*\x00": "<", b"MM\x00*": ">"}
# JPEG start-of-frame markers: 0xC0..0xCF but DHT (C4), JPG (C8) and DAC (CC).
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0..7, SOI.
_JPEG_BARE = frozenset([0x01, *range(0xD0, 0xD8), 0xD8])


def compressed_image_size(data: bytes) -> tuple[int, int]:
    """(width, height) that a JPEG, PNG or TIFF file's header gives."""
    if data.startswith(_PNG):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValueError("PNG without its IHDR header")
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data[:4] in _TIFF:
        return _tiff_size(data, _TIFF[data[:4]])
    raise ValueError(f"not a JPEG, PNG or TIFF file (it begins {data[:8].hex(' ')})")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker == 0xFF:          # fill byte
            at += 1
            continue
        if marker in _JPEG_BARE:
            at += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before it
            break
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        if marker in _JPEG_FRAMES:
            if length < 7 or at + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            if height == 0:
                raise ValueError("JPEG whose height is not in its frame header")
            return width, height
        at += 2 + length
    raise ValueError("JPEG without a readable frame header")


def _tiff_size(data: bytes, order: str) -> tuple[int, int]:
    def unpack(fmt: str, at: int):
        if at < 0 or at + struct.calcsize(order + fmt) > len(data):
            raise ValueError("TIFF header runs past the data")
        return struct.unpack_from(order + fmt, data, at)

    ifd = unpack("I", 4)[0]
    count = unpack("H", ifd)[0]
    size = {}
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind = unpack("HH", entry)
        if tag in (256, 257) and kind in (3, 4) and tag not in size:   # the first, as libtiff
            size[tag] = unpack("H" if kind == 3 else "I", entry + 8)[0]  # ImageWidth, ImageLength
    if len(size) != 2:
        raise ValueError("TIFF whose first directory does not give its width and length")
    return size[256], size[257]
