"""What decoding a compressed image will cost, read from its header before anything is decoded.

A few hundred bytes of JPEG or PNG can claim 20000 x 20000 pixels, and decoding them takes
gigabytes and seconds; a progressive JPEG of a few hundred kB can hold thousands of scans, each a
pass over every pixel (seconds of decoding on a small picture). So the claim is checked first
(``preprocess.decode_compressed``): its size, the bytes it decodes to, and a JPEG's scan count.
Read here: the containers image_transport's compressed plugin writes, JPEG, PNG and TIFF.
Anything else is refused, as is a header that does not say its size. Every refusal is a
``ValueError``.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

_PNG = b"\x89PNG\r\n\x1a\n"
_TIFF = {b"II*\x00": "<", b"MM\x00*": ">"}
# JPEG start-of-frame markers: 0xC0..0xCF but DHT (C4), JPG (C8) and DAC (CC).
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0..7, SOI.
_JPEG_BARE = frozenset([0x01, *range(0xD0, 0xD8), 0xD8])


# PNG colour type -> samples per pixel as decoded (a palette decodes to colour).
_PNG_SAMPLES = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


class CompressedHeader(NamedTuple):
    width: int
    height: int
    decoded_bytes: int
    """Bytes of the decoded picture: pixels x samples (for a TIFF at least 3, as if colour) x
    bytes per sample."""
    scans: int
    """A JPEG's scans (start-of-scan markers: a baseline JPEG has one); 1 for PNG and TIFF."""


def compressed_image_header(data: bytes) -> CompressedHeader:
    """What a JPEG, PNG or TIFF file's header says; ``data`` the whole file (a JPEG's scans are
    counted over all of it)."""
    if data.startswith(_PNG):
        if len(data) < 26 or data[12:16] != b"IHDR":
            raise ValueError("PNG without its IHDR header")
        width, height = struct.unpack(">II", data[16:24])
        depth, colour = data[24], data[25]
        samples = _PNG_SAMPLES.get(colour, 4)
        return CompressedHeader(width, height, width * height * samples * (2 if depth == 16 else 1), 1)
    if data.startswith(b"\xff\xd8"):
        width, height, components, precision = _jpeg_frame(data)
        # Entropy-coded data stuffs every 0xFF with 0x00: FF DA is a start-of-scan marker only.
        return CompressedHeader(width, height, width * height * components * (2 if precision > 8 else 1),
                                data.count(b"\xff\xda"))
    if data[:4] in _TIFF:
        width, height, samples, bytes_per_sample = _tiff_layout(data, _TIFF[data[:4]])
        return CompressedHeader(width, height, width * height * max(samples, 3) * bytes_per_sample, 1)
    raise ValueError(f"not a JPEG, PNG or TIFF file (it begins {data[:8].hex(' ')})")


def compressed_image_size(data: bytes) -> tuple[int, int]:
    """(width, height) that a JPEG, PNG or TIFF file's header gives."""
    header = compressed_image_header(data)
    return header.width, header.height


def _jpeg_frame(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, components, sample precision in bits) of a JPEG's frame header, found as
    libjpeg finds it (jdmarker.c: ``next_marker``, ``skip_variable``): bytes before a marker's
    0xFF skipped, fill 0xFFs swallowed, a stuffed FF 00 not a marker, and a segment's length
    counted from its length field, one below 2 skipping nothing. A reader that differed was
    shown a 1 x 1 frame where libjpeg decoded 65500 x 60000 (an adversarial audit)."""
    at, end = 2, len(data)
    while True:
        while at < end and data[at] != 0xFF:
            at += 1
        while at < end and data[at] == 0xFF:
            at += 1
        if at >= end:
            break
        marker, at = data[at], at + 1
        if marker == 0x00 or marker in _JPEG_BARE:
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before it
            break
        if at + 2 > end:
            break
        length = struct.unpack(">H", data[at:at + 2])[0]
        if marker in _JPEG_FRAMES:
            if length < 8 or at + 8 > end:
                break
            height, width = struct.unpack(">HH", data[at + 3:at + 7])
            if height == 0:
                raise ValueError("JPEG whose height is not in its frame header")
            return width, height, max(1, data[at + 7]), data[at + 2]
        at += max(length, 2)
    raise ValueError("JPEG without a readable frame header")


def _tiff_layout(data: bytes, order: str) -> tuple[int, int, int, int]:
    """(width, height, samples per pixel, bytes per sample) of a TIFF's first directory. A few
    kB of deflate can hold 5000 x 5000 RGBA of 64-bit floats (800 MB decoded): the sample
    layout counts as much as the size, and samples that are not 8- or 16-bit integers, which
    the controller refuses once decoded, are refused here, before."""
    def unpack(fmt: str, at: int):
        if at < 0 or at + struct.calcsize(order + fmt) > len(data):
            raise ValueError("TIFF header runs past the data")
        return struct.unpack_from(order + fmt, data, at)

    def values(kind: int, count: int, entry: int) -> tuple:
        fmt = {3: "H", 4: "I"}[kind] * count      # SHORT, LONG; inline when they fit in 4 bytes
        at = entry + 8 if struct.calcsize(fmt) <= 4 else unpack("I", entry + 8)[0]
        return unpack(fmt, at)

    ifd = unpack("I", 4)[0]
    count = unpack("H", ifd)[0]
    tags = {}
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, n = unpack("HHI", entry)
        # ImageWidth, ImageLength, BitsPerSample, SamplesPerPixel, SampleFormat: the first, as libtiff
        if tag in (256, 257, 258, 277, 339) and kind in (3, 4) and tag not in tags:
            if not (n == 1 or (tag in (258, 339) and n <= 64)):   # one, or one per sample
                raise ValueError(f"TIFF whose tag {tag} has {n} values")
            tags[tag] = values(kind, n, entry)
    if 256 not in tags or 257 not in tags:
        raise ValueError("TIFF whose first directory does not give its width and length")
    bits, kind = max(tags.get(258, (1,))), max(tags.get(339, (1,)))
    if kind not in (1, 2) or bits > 16:         # SampleFormat 1, 2: integers; 3: IEEE float
        name = {1: "integer", 2: "integer", 3: "float"}.get(kind, f"SampleFormat {kind}")
        raise ValueError(f"TIFF of {bits}-bit {name} samples: only 8- or 16-bit integer samples are read")
    return tags[256][0], tags[257][0], tags.get(277, (1,))[0], 2 if bits > 8 else 1
