"""Crafted compressed images: files a decoder reads otherwise than a quick header check."""
from __future__ import annotations


def jpeg_segments(jpeg: bytes) -> tuple[list[bytes], bytes]:
    """A JPEG as an encoder writes it: its segments after SOI, each whole, and the rest from SOS."""
    at, segments = 2, []
    while jpeg[at + 1] != 0xDA:
        length = int.from_bytes(jpeg[at + 2:at + 4], "big")
        segments.append(jpeg[at:at + 2 + length])
        at += 2 + length
    return segments, jpeg[at:]


def frame_hidden_behind_a_stuffed_zero(jpeg: bytes, width: int, height: int) -> bytes:
    """The audit's file: after SOI an FF 00, which libjpeg drops as a stuffed zero, and two bytes
    that a reader taking FF 00 for a marker follows as its length, to a 1 x 1 decoy frame header
    inside an APP1 segment that libjpeg skips. libjpeg reads the real frame header between them,
    here claiming ``width`` x ``height``."""
    segments, scan = jpeg_segments(jpeg)
    frame = next(s for s in segments if s[1] == 0xC0)
    real = frame[:5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + frame[9:]
    decoy = frame[:5] + (1).to_bytes(2, "big") + (1).to_bytes(2, "big") + frame[9:]
    app1 = b"Exif\x00\x00" + decoy
    app1 = b"\xff\xe1" + (2 + len(app1)).to_bytes(2, "big") + app1
    decoy_at = 2 + 4 + len(real) + 4 + 6
    others = b"".join(s for s in segments if s[1] not in (0xC0, 0xE0))
    return b"\xff\xd8\xff\x00" + (decoy_at - 4).to_bytes(2, "big") + real + app1 + others + scan
