"""Camera frames to the model's input: decoding, crop modes, refusals, and the identity of the
rosbag importer's and the controller node's paths (issue 9 item 2)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from crafted_images import frame_hidden_behind_a_stuffed_zero, jpeg_segments

from grasp_ros.models.preprocess import (MAX_SIDE, ImagePreprocessing, decode_compressed,
                                         decode_raw, prepare_image)

RNG = np.random.default_rng(0)
FRAME = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)          # h=5, w=7: not square


def raw(rgb: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False):
    """(step, data) of ``rgb`` written as ``encoding``, each row followed by ``pad`` junk bytes.
    Mono frames are written from the green channel (mono16: the top byte green, the low byte
    255 - green, so that the wrong byte order shows)."""
    h, w = rgb.shape[:2]
    if encoding in ("rgb8", "bgr8"):
        pixels = rgb if encoding == "rgb8" else rgb[..., ::-1]
    elif encoding in ("rgba8", "bgra8"):
        alpha = RNG.integers(0, 256, (h, w, 1), dtype=np.uint8)       # ignored by the decoder
        pixels = np.concatenate([rgb if encoding == "rgba8" else rgb[..., ::-1], alpha], axis=2)
    elif encoding == "mono8":
        pixels = rgb[..., 1:2]
    else:
        green = rgb[..., 1].astype(np.int64)
        pixels = (green * 256 + 255 - green).astype(">u2" if bigendian else "<u2").view(np.uint8)
    rows = np.ascontiguousarray(pixels).reshape(h, -1)
    rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return rows.shape[1], rows.tobytes()


def expected_rgb(rgb: np.ndarray, encoding: str) -> np.ndarray:
    return np.repeat(rgb[..., 1:2], 3, axis=2) if encoding.startswith("mono") else rgb


def png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return data.tobytes()


# -- decoding ----------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
@pytest.mark.parametrize("pad", [0, 3])
def test_every_raw_encoding_decodes_to_rgb_without_row_padding(encoding, pad):
    step, data = raw(FRAME, encoding, pad)
    rgb = decode_raw(encoding, 5, 7, step, data)
    assert rgb.dtype == np.uint8 and rgb.shape == (5, 7, 3)
    assert np.array_equal(rgb, expected_rgb(FRAME, encoding))
    assert rgb.flags.writeable and rgb.flags.c_contiguous    # a copy, not the message's buffer


@pytest.mark.parametrize("encoding", ["rgb16", "bgr16", "rgba16", "bgra16"])
def test_16_bit_colour_keeps_the_top_byte_in_either_byte_order(encoding):
    channels = 4 if "a" in encoding[3:] else 3
    wide = np.concatenate([FRAME, np.full((5, 7, 1), 9, np.uint8)], axis=2)[..., :channels]
    if encoding.startswith("bgr"):
        wide = np.concatenate([wide[..., 2::-1], wide[..., 3:]], axis=2)
    for bigendian in (False, True):
        words = (wide.astype(np.int64) * 256 + 0x5A).astype(">u2" if bigendian else "<u2")
        assert np.array_equal(decode_raw(encoding, 5, 7, 7 * channels * 2, words.tobytes(), bigendian), FRAME)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_mosaics_demosaic_to_their_colours(pattern):
    """Each 2 x 2 cell of a bayer_<pattern>8 frame holds the named colours in reading order; a
    uniform colour comes back exactly away from the borders (a wrong pattern swaps or mixes
    channels), and row padding is dropped."""
    colour = np.array([200, 100, 30], np.uint8)
    h, w = 8, 10
    mosaic = np.zeros((h, w), np.uint8)
    for (dy, dx), channel in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern):
        mosaic[dy::2, dx::2] = colour["rgb".index(channel)]
    padded = np.concatenate([mosaic, np.full((h, 2), 0xAB, np.uint8)], axis=1)
    rgb = decode_raw(f"bayer_{pattern}8", h, w, w + 2, padded.tobytes())
    assert rgb.shape == (h, w, 3) and (rgb[2:-2, 2:-2] == colour).all()


@pytest.mark.parametrize("encoding, order", [("yuv422", "UYVY"), ("yuv422_yuy2", "YUYV"),
                                             ("uyvy", "UYVY"), ("yuyv", "YUYV")])
def test_yuv422_reads_its_byte_order(encoding, order):
    """4:2:2 YUV, two pixels sharing U and V: grey stays grey, and a colour keeps its hue (red
    strongest, blue weakest) only when the bytes are read in the encoding's order. "uyvy" and
    "yuyv" are sensor_msgs' names since Jazzy (a USB camera's driver sends them; an audit's
    camera was refused as unsupported)."""
    for rgb in ([128, 128, 128], [200, 100, 30]):
        y, u, v = cv2.cvtColor(np.array([[rgb]], np.uint8), cv2.COLOR_RGB2YUV)[0, 0]
        pair = np.array([{"Y": y, "U": u, "V": v}[c] for c in order], np.uint8)
        frame = decode_raw(encoding, 2, 4, 8, np.tile(pair, 4).tobytes())
        assert frame.shape == (2, 4, 3) and (frame == frame[0, 0]).all()
        if rgb[0] == rgb[2]:
            assert np.abs(frame[0, 0].astype(int) - 128).max() <= 3
        else:
            assert frame[0, 0, 0] > frame[0, 0, 1] > frame[0, 0, 2]
    with pytest.raises(ValueError, match="even width"):
        decode_raw(encoding, 2, 3, 6, bytes(12))


def test_mono16_honours_the_byte_order_and_any_buffer_type():
    step, data = raw(FRAME, "mono16", bigendian=True)
    assert np.array_equal(decode_raw("mono16", 5, 7, step, data, is_bigendian=True),
                          expected_rgb(FRAME, "mono16"))
    assert not np.array_equal(decode_raw("mono16", 5, 7, step, data), expected_rgb(FRAME, "mono16"))
    step, data = raw(FRAME, "rgb8")
    for buffer in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8), list(data)):
        assert np.array_equal(decode_raw("rgb8", 5, 7, step, buffer), FRAME)


def test_compressed_images_decode_to_rgb():
    assert np.array_equal(decode_compressed("png", png(FRAME)), FRAME)
    assert np.array_equal(decode_compressed("rgb8; png compressed bgr8", png(FRAME)), FRAME)
    grey = FRAME[..., 1]
    assert np.array_equal(decode_compressed("mono8; png compressed mono8",
                                            cv2.imencode(".png", grey)[1].tobytes()),
                          expected_rgb(FRAME, "mono8"))
    bgra = np.concatenate([FRAME[..., ::-1], np.full((5, 7, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(decode_compressed("png", cv2.imencode(".png", bgra)[1].tobytes()), FRAME)
    deep = grey.astype(np.uint16) * 257 + 3                   # 16-bit PNG: the top byte is kept
    assert np.array_equal(decode_compressed("mono16; png compressed mono16",
                                            cv2.imencode(".png", deep)[1].tobytes()),
                          expected_rgb(FRAME, "mono8"))
    smooth = cv2.resize(FRAME, (70, 50), interpolation=cv2.INTER_LINEAR)
    jpeg = cv2.imencode(".jpg", smooth[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    decoded = decode_compressed("rgb8; jpeg compressed bgr8", jpeg)
    assert decoded.shape == (50, 70, 3)
    assert np.abs(decoded.astype(int) - smooth).mean() < 4     # lossy, but RGB (not BGR) order
    tiff = cv2.imencode(".tiff", np.ascontiguousarray(FRAME[..., ::-1]))[1].tobytes()
    assert np.array_equal(decode_compressed("tiff", tiff), FRAME)


def _claiming(data: bytes, width: int, height: int) -> bytes:
    """``data`` (a small JPEG, PNG or TIFF of FRAME's size) with a header claiming another size."""
    data = bytearray(data)
    if data.startswith(b"\x89PNG"):
        data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    elif data.startswith(b"\xff\xd8"):
        at = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xC0)
        data[at + 5:at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    else:
        data = data.replace((7).to_bytes(4, "little"), width.to_bytes(4, "little"), 1)
        data = data.replace((5).to_bytes(4, "little"), height.to_bytes(4, "little"), 1)
    return bytes(data)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tiff"])
def test_a_small_file_claiming_a_huge_frame_is_refused_before_it_is_decoded(ext, monkeypatch):
    import grasp_ros.models.preprocess as preprocess
    from grasp_ros.models.image_headers import compressed_image_size
    small = cv2.imencode(ext, FRAME)[1].tobytes()
    assert compressed_image_size(small) == (7, 5)
    bomb = _claiming(small, 20000, 20000)      # ~1.2 GB of pixels from a few hundred bytes
    assert compressed_image_size(bomb) == (20000, 20000)
    monkeypatch.setattr(preprocess.cv2, "imdecode", lambda *a: pytest.fail("decoded the bomb"))
    with pytest.raises(ValueError, match="20000x20000: larger than"):
        decode_compressed("jpeg", bomb)
    with pytest.raises(ValueError, match="8192x8192: more than 25000000 pixels"):
        decode_compressed("png", _claiming(small, 8192, 8192))     # within a side, not in total


def _jpeg_variants(jpeg: bytes) -> dict[str, bytes]:
    """One JPEG written in ways libjpeg reads as the same picture (with a warning at most)."""
    segments, scan = jpeg_segments(jpeg)
    body = b"".join(segments)
    return {
        "as encoded": jpeg,
        "a stuffed zero after SOI": b"\xff\xd8\xff\x00" + body + scan,
        "junk between segments": b"\xff\xd8" + segments[0] + b"\x00\x01\x02" + b"".join(segments[1:]) + scan,
        "fill bytes before a marker": b"\xff\xd8" + segments[0] + b"\xff\xff\xff" + b"".join(segments[1:]) + scan,
        "a segment whose length is 0": b"\xff\xd8\xff\xe5\x00\x00" + body + scan,
        "the frame hidden behind a stuffed zero": frame_hidden_behind_a_stuffed_zero(jpeg, 40, 30),
    }


@pytest.mark.parametrize("variant", ["as encoded", "a stuffed zero after SOI", "junk between segments",
                                     "fill bytes before a marker", "a segment whose length is 0",
                                     "the frame hidden behind a stuffed zero"])
def test_the_jpeg_size_check_reads_the_frame_header_libjpeg_decodes(variant):
    """The size check guards the decoder only while both read the same frame header: an audit's
    648-byte file showed it 1 x 1 and libjpeg 65500 x 60000 (a stuffed FF 00 after SOI, taken
    for a marker), whose decoding ended the controller. Each way of writing one 40 x 30 JPEG:
    the check's size is the decoded one."""
    from grasp_ros.models.image_headers import compressed_image_size
    jpeg = cv2.imencode(".jpg", cv2.resize(FRAME, (40, 30)))[1].tobytes()
    data = _jpeg_variants(jpeg)[variant]
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded is not None and decoded.shape[:2] == (30, 40)
    assert compressed_image_size(data) == (40, 30)
    assert decode_compressed("jpeg", data).shape == (30, 40, 3)


def test_a_frame_hidden_behind_a_stuffed_zero_is_refused_before_it_is_decoded(monkeypatch):
    """The audit's 648 bytes claiming 65500 x 60000 (OpenCV's own cap raised cv2.error, not a
    ValueError, and the node ended), and 8000 x 8000 (decoded in a second to 192 MB, used as a
    frame, a moving command standing meanwhile)."""
    import grasp_ros.models.preprocess as preprocess
    jpeg = cv2.imencode(".jpg", FRAME)[1].tobytes()
    monkeypatch.setattr(preprocess.cv2, "imdecode", lambda *a: pytest.fail("decoded the bomb"))
    with pytest.raises(ValueError, match="65500x60000: larger than 8192 px per side"):
        decode_compressed("jpeg", frame_hidden_behind_a_stuffed_zero(jpeg, 65500, 60000))
    with pytest.raises(ValueError, match="8000x8000: more than 25000000 pixels"):
        decode_compressed("jpeg", frame_hidden_behind_a_stuffed_zero(jpeg, 8000, 8000))


def test_what_the_decoder_does_beyond_the_header_check_is_a_refusal(monkeypatch):
    """Were the header check and the decoder ever to read different frames again: OpenCV's
    errors (its pixel cap, a failed allocation) and a picture of another size than the header's
    are refusals (ValueError), not the end of the node."""
    import grasp_ros.models.preprocess as preprocess
    jpeg = cv2.imencode(".jpg", FRAME)[1].tobytes()

    def fails(*args):
        raise cv2.error("OpenCV(5.1.0) loadsave.cpp:80: error: (-215:Assertion failed) "
                        "pixels <= CV_IO_MAX_IMAGE_PIXELS in function 'validateInputImageSize'")
    monkeypatch.setattr(preprocess.cv2, "imdecode", fails)
    with pytest.raises(ValueError, match="cannot decode the compressed image .*CV_IO_MAX_IMAGE_PIXELS"):
        decode_compressed("jpeg", jpeg)
    monkeypatch.setattr(preprocess.cv2, "imdecode", lambda *a: np.zeros((500, 700, 3), np.uint8))
    with pytest.raises(ValueError, match="decodes to 700x500 where its header says 7x5"):
        decode_compressed("jpeg", jpeg)


OPENCV_CAP = """
import grasp_ros.ros.controller_node
import struct, cv2, numpy as np
small = bytearray(cv2.imencode(".jpg", np.zeros((5, 7, 3), np.uint8))[1].tobytes())
at = small.index(b"\\xff\\xc0")
small[at + 5:at + 9] = struct.pack(">HH", 6000, 6000)
try:
    cv2.imdecode(np.frombuffer(bytes(small), np.uint8), cv2.IMREAD_UNCHANGED)
    print("decoded")
except cv2.error as exc:
    print("refused", "CV_IO_MAX_IMAGE_PIXELS" in str(exc))
"""


def test_opencv_itself_decodes_no_more_pixels_than_the_node_takes_in_the_nodes_process():
    """OpenCV's own cap (1 Gpx by default: 3 GB of colour) lowered to MAX_PIXELS wherever the
    controller loads cv2 first, a second line behind the header checks."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    out = subprocess.run([sys.executable, "-c", OPENCV_CAP], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "refused True", out.stderr[-2000:]


def _first_scan(jpeg: bytes) -> bytes:
    """A JPEG's first scan: its start-of-scan marker up to the next marker (not a stuffed 0xFF
    or a restart marker)."""
    start = jpeg.index(b"\xff\xda")
    at = start + 2
    while not (jpeg[at] == 0xFF and jpeg[at + 1] not in (0x00, *range(0xD0, 0xD8))):
        at += 1
    return jpeg[start:at]


def test_a_jpeg_of_thousands_of_scans_is_refused_before_it_is_decoded(monkeypatch):
    """Each scan is a pass over the whole picture: a few hundred kB of them took 18 s to decode
    on the executor's thread. A progressive JPEG as encoders write it decodes."""
    import grasp_ros.models.preprocess as preprocess
    from grasp_ros.models.image_headers import compressed_image_header
    smooth = cv2.resize(FRAME, (70, 50), interpolation=cv2.INTER_LINEAR)
    progressive = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert 2 <= compressed_image_header(progressive).scans <= preprocess.MAX_JPEG_SCANS
    assert decode_compressed("jpeg", progressive).shape == (50, 70, 3)
    scan = _first_scan(progressive)
    end = progressive.rindex(b"\xff\xd9")
    bomb = progressive[:end] + scan * 3000 + progressive[end:]
    assert compressed_image_header(bomb).scans > 3000
    monkeypatch.setattr(preprocess.cv2, "imdecode", lambda *a: pytest.fail("decoded the bomb"))
    with pytest.raises(ValueError, match=r"a JPEG of \d+ scans: more than 100"):
        decode_compressed("jpeg", bomb)


def test_a_frame_that_decodes_to_too_many_bytes_is_refused_before_it_is_decoded(monkeypatch):
    """16-bit RGBA: 8 bytes a pixel. Within the pixel cap, a small PNG of it decoded to 200 MB
    and held the executor for a second."""
    import grasp_ros.models.preprocess as preprocess
    from grasp_ros.models.image_headers import compressed_image_header
    deep = cv2.imencode(".png", np.zeros((5, 7, 4), np.uint16))[1].tobytes()
    assert compressed_image_header(deep).decoded_bytes == 5 * 7 * 4 * 2
    colour = cv2.imencode(".png", FRAME)[1].tobytes()
    monkeypatch.setattr(preprocess.cv2, "imdecode", lambda *a: pytest.fail("decoded the bomb"))
    with pytest.raises(ValueError, match="5000x5000 and decodes to 200000000 bytes"):
        decode_compressed("png", _claiming(deep, 5000, 5000))
    with pytest.raises(ValueError, match="more than 25000000 pixels"):   # 8-bit colour: the pixel cap
        decode_compressed("png", _claiming(colour, 5001, 5000))
    assert compressed_image_header(_claiming(colour, 5000, 5000)).decoded_bytes == preprocess.MAX_DECODED_BYTES


def test_a_tiff_counts_its_samples_and_floats_are_refused_before_they_are_decoded(monkeypatch):
    """A 5 kB deflate TIFF of 5000 x 5000 RGBA 64-bit floats decoded to 800 MB (1.9 GB at the
    peak, 5 s) while the size check counted it as 8-bit colour (an adversarial audit): its
    samples count, and float samples, refused once decoded, are refused before."""
    import grasp_ros.models.preprocess as preprocess
    from grasp_ros.models.image_headers import compressed_image_header
    deep = cv2.imencode(".tiff", np.zeros((5, 7, 4), np.uint16))[1].tobytes()
    assert compressed_image_header(deep).decoded_bytes == 5 * 7 * 4 * 2
    floats = cv2.imencode(".tiff", np.zeros((5, 7, 3), np.float32))[1].tobytes()
    monkeypatch.setattr(preprocess.cv2, "imdecode", lambda *a: pytest.fail("decoded the bomb"))
    with pytest.raises(ValueError, match="5000x5000 and decodes to 200000000 bytes"):
        decode_compressed("tiff", _claiming(deep, 5000, 5000))
    with pytest.raises(ValueError, match="TIFF of 32-bit float samples: only 8- or 16-bit integer"):
        decode_compressed("tiff", floats)


def test_a_tiff_that_gives_its_size_twice_is_read_as_libtiff_reads_it():
    """The first ImageWidth / ImageLength entries count (a decoder takes those): a later small
    pair must not hide a huge first one."""
    import struct
    from grasp_ros.models.image_headers import compressed_image_size
    entries = [(256, 4, 16000), (257, 4, 16000), (256, 3, 64), (257, 3, 64)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3
                                             else struct.pack("<I", value))
        for tag, kind, value in entries) + struct.pack("<I", 0)
    assert compressed_image_size(b"II*\x00" + struct.pack("<I", 8) + ifd) == (16000, 16000)


# -- preparation -------------------------------------------------------------------------------

def test_center_crops_the_largest_centred_square():
    frame = RNG.integers(0, 256, (72, 96, 3), dtype=np.uint8)
    assert np.array_equal(prepare_image(frame, 72), frame[:, 12:84])          # no resampling
    assert np.array_equal(prepare_image(frame.transpose(1, 0, 2), 72), frame.transpose(1, 0, 2)[12:84])
    odd = RNG.integers(0, 256, (5, 8, 3), dtype=np.uint8)
    assert np.array_equal(prepare_image(odd, 5), odd[:, 1:6])                # leftover to the right
    assert np.array_equal(prepare_image(frame, 36),
                          cv2.resize(frame[:, 12:84], (36, 36), interpolation=cv2.INTER_AREA))


def test_center_and_stretch_differ_only_in_what_they_keep():
    frame = np.zeros((72, 96, 3), np.uint8)
    frame[:, :12] = frame[:, 84:] = (255, 0, 0)                # red bands outside the centre square
    frame[:, 12:84] = (0, 0, 255)
    center, stretch = prepare_image(frame, 8, "center"), prepare_image(frame, 8, "stretch")
    assert (center == (0, 0, 255)).all()
    assert (stretch[:, 0] == (255, 0, 0)).all() and (stretch[:, -1] == (255, 0, 0)).all()
    assert (stretch[:, 1:-1] == (0, 0, 255)).all()
    assert np.array_equal(stretch, cv2.resize(frame, (8, 8), interpolation=cv2.INTER_AREA))


def test_one_interpolation_rule():
    small = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    assert np.array_equal(prepare_image(small, 8, "stretch"),
                          cv2.resize(small, (8, 8), interpolation=cv2.INTER_LINEAR))   # grows
    assert np.array_equal(prepare_image(small, 3, "stretch"),
                          cv2.resize(small, (3, 3), interpolation=cv2.INTER_AREA))     # shrinks
    big = np.repeat(np.repeat(small[:, 1:5], 4, axis=0), 4, axis=1)      # 16x16, 4x4 blocks
    assert np.array_equal(prepare_image(big, 4), small[:, 1:5])          # area average of blocks


def test_preprocessing_settings_round_trip():
    settings = ImagePreprocessing(32, "stretch")
    assert ImagePreprocessing.from_dict(settings.to_dict()) == settings
    assert settings.to_dict() == {"size": 32, "crop": "stretch"}
    assert ImagePreprocessing.from_dict({"size": 64}).crop == "center"
    assert np.array_equal(settings(FRAME), prepare_image(FRAME, 32, "stretch"))
    with pytest.raises(ValueError, match=r"unknown keys \['interpolation'\]"):
        ImagePreprocessing.from_dict({"size": 32, "interpolation": "cubic"})
    with pytest.raises(ValueError, match="needs a size"):
        ImagePreprocessing.from_dict({"crop": "center"})
    with pytest.raises(ValueError, match="crop must be one of center, stretch, got 'fill'"):
        ImagePreprocessing(32, "fill")


# -- refusals ----------------------------------------------------------------------------------

def test_broken_raw_images_are_refused_with_the_reason():
    step, data = raw(FRAME, "rgb8")
    cases = [
        (("nv21", 5, 7, 14, bytes(70)), "unsupported image encoding 'nv21'"),
        (("16UC1", 5, 7, 14, bytes(70)), "unsupported image encoding '16UC1'"),
        (("rgb8", 0, 7, 21, b""), r"empty image \(7x0\)"),
        (("rgb8", 5, 0, 0, b""), r"empty image \(0x5\)"),
        (("rgb8", 5, 7, 20, bytes(100)), "step 20 is less than width x bytes per pixel = 21"),
        (("mono16", 5, 7, 7, bytes(35)), "step 7 is less than width x bytes per pixel = 14"),
        (("rgb8", 5, 7, step, data[:-1]), "104 bytes of data, expected step x height = 105"),
        (("rgb8", 5, 7, step, data + b"\0"), "106 bytes of data"),
        (("mono8", 2, MAX_SIDE + 1, MAX_SIDE + 1, bytes(2 * MAX_SIDE + 2)),
         f"larger than {MAX_SIDE} px per side"),
        (("rgb8", 65535, 65535, 3 * 65535, data), "bytes of data"),    # a header that lies
        # 61 MiB, under the message limit, held the executor over a second (an adversarial audit)
        (("mono8", 8000, 8000, 8000, bytes(8000 * 8000)), "image is 8000x8000: more than 25000000 pixels"),
    ]
    for args, reason in cases:
        with pytest.raises(ValueError, match=reason):
            decode_raw(*args)


def test_broken_compressed_images_are_refused_with_the_reason():
    good = png(FRAME)
    with pytest.raises(ValueError, match="cannot decode the compressed image"):
        decode_compressed("png", good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a JPEG, PNG or TIFF file"):
        decode_compressed("jpeg", b"not an image at all")
    with pytest.raises(ValueError, match="has no data"):
        decode_compressed("jpeg", b"")
    with pytest.raises(ValueError, match="compressedDepth"):
        decode_compressed("16UC1; compressedDepth png", good)


def test_bad_preparation_settings_and_frames_are_refused():
    for size in (0, -1, MAX_SIDE + 1, 32.0, True):
        with pytest.raises(ValueError, match="image size must be an integer"):
            prepare_image(FRAME, size)
    with pytest.raises(ValueError, match="crop must be one of"):
        prepare_image(FRAME, 32, "fill")
    with pytest.raises(ValueError, match="RGB uint8"):
        prepare_image(FRAME.astype(np.float32), 32)
    with pytest.raises(ValueError, match="RGB uint8"):
        prepare_image(FRAME[..., :2], 32)
    with pytest.raises(ValueError, match="empty image"):
        prepare_image(FRAME[:0], 32)


# -- the identity: rosbag importer == controller node ------------------------------------------

SIZE = 32
RAW_TOPICS = {"/cam/rgb8": ("rgb8", 0, False), "/cam/bgr8_padded": ("bgr8", 4, False),
              "/cam/rgba8": ("rgba8", 0, False), "/cam/bgra8_padded": ("bgra8", 8, False),
              "/cam/mono8": ("mono8", 2, False), "/cam/mono16_be": ("mono16", 0, True)}
COMPRESSED_TOPICS = {"/cam/png": "rgb8; png compressed bgr8", "/cam/jpeg": "rgb8; jpeg compressed bgr8"}


def camera_frames(n: int) -> np.ndarray:
    """n frames of a 96x72 (w x h) camera: a moving disc on a gradient, noise on top."""
    yy, xx = np.mgrid[:72, :96]
    frames = []
    for i in range(n):
        frame = np.stack([xx * 2, yy * 3, np.full_like(xx, 40 * i)], axis=2).astype(np.float64)
        frame[(xx - 20 - 15 * i) ** 2 + (yy - 36) ** 2 < 100] = (230, 20, 20)
        frame += RNG.normal(0, 6, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return np.stack(frames)


def write_camera_bag(path: Path, frames: np.ndarray) -> None:
    """A rosbag2 with every camera topic, joint_states and command (the importer needs both)."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    t = store.types
    Image, Compressed = t["sensor_msgs/msg/Image"], t["sensor_msgs/msg/CompressedImage"]
    JointState, Array = t["sensor_msgs/msg/JointState"], t["std_msgs/msg/Float64MultiArray"]
    Header, Time, Layout = t["std_msgs/msg/Header"], t["builtin_interfaces/msg/Time"], t["std_msgs/msg/MultiArrayLayout"]
    period, start = 10**8, 1_700_000_000 * 10**9
    with Writer(path, version=9) as writer:
        conns = {topic: writer.add_connection(topic, kind.__msgtype__, typestore=store) for topic, kind in
                 [(k, Image) for k in RAW_TOPICS] + [(k, Compressed) for k in COMPRESSED_TOPICS]
                 + [("/joint_states", JointState), ("/command", Array)]}

        def write(topic, ns, msg):
            writer.write(conns[topic], ns, store.serialize_cdr(msg, type(msg).__msgtype__))

        for i, frame in enumerate(frames):
            ns = start + i * period
            header = Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="camera")
            for topic, (encoding, pad, bigendian) in RAW_TOPICS.items():
                step, data = raw(frame, encoding, pad, bigendian)
                write(topic, ns, Image(header=header, height=72, width=96, encoding=encoding,
                                       is_bigendian=int(bigendian), step=step,
                                       data=np.frombuffer(data, np.uint8)))
            for topic, fmt in COMPRESSED_TOPICS.items():
                ext = ".png" if "png" in fmt else ".jpg"
                data = cv2.imencode(ext, np.ascontiguousarray(frame[..., ::-1]))[1].reshape(-1)
                write(topic, ns, Compressed(header=header, format=fmt, data=data))
            write("/joint_states", ns, JointState(header=header, name=["x", "y"],
                                                  position=np.array([0.1 * i, 0.0]),
                                                  velocity=np.zeros(0), effort=np.zeros(0)))
            if i < len(frames) - 1:
                write("/command", ns + period // 2, Array(layout=Layout(dim=[], data_offset=0),
                                                          data=np.array([0.5, -0.5])))


def node_messages(frames: np.ndarray) -> dict[str, list]:
    """The same frames as the ROS messages a camera would publish to the node."""
    from sensor_msgs.msg import CompressedImage, Image

    messages = {}
    for topic, (encoding, pad, bigendian) in RAW_TOPICS.items():
        messages[topic] = []
        for frame in frames:
            step, data = raw(frame, encoding, pad, bigendian)
            messages[topic].append(Image(height=72, width=96, encoding=encoding,
                                         is_bigendian=int(bigendian), step=step, data=data))
    for topic, fmt in COMPRESSED_TOPICS.items():
        ext = ".png" if "png" in fmt else ".jpg"
        messages[topic] = [CompressedImage(format=fmt, data=cv2.imencode(
            ext, np.ascontiguousarray(f[..., ::-1]))[1].tobytes()) for f in frames]
    return messages


def test_the_bag_importer_and_the_node_make_identical_model_inputs(tmp_path):
    pytest.importorskip("rosbags")
    try:
        from grasp_ros.ros.conversions import compressed_image_to_rgb, image_to_rgb
    except ImportError as exc:                     # rclpy's messages (ROS 2) are not importable
        pytest.skip(f"ROS 2 messages are not importable: {exc}")
    from grasp_ros.data.rosbag import read_rosbag

    frames = camera_frames(4)
    bag = tmp_path / "camera_bag"
    write_camera_bag(bag, frames)
    messages = node_messages(frames)
    for topic in [*RAW_TOPICS, *COMPRESSED_TOPICS]:
        imported = read_rosbag(bag, image_topic=topic, image_size=SIZE, progress=False).images[0]
        convert = compressed_image_to_rgb if topic in COMPRESSED_TOPICS else image_to_rgb
        live = np.stack([convert(m, SIZE, "center") for m in messages[topic]])
        assert imported.shape == live.shape == (len(frames), SIZE, SIZE, 3), topic
        assert imported.dtype == live.dtype == np.uint8
        assert np.array_equal(imported, live), topic
        if topic != "/cam/jpeg":          # lossless: also what the frames themselves give
            encoding = RAW_TOPICS.get(topic, ("rgb8",))[0]
            want = np.stack([prepare_image(expected_rgb(f, encoding), SIZE) for f in frames])
            assert np.array_equal(imported, want), topic
    # The frames differ from each other (the disc moves): the comparison is not of blanks.
    assert not np.array_equal(live[0], live[1])


def test_the_node_conversions_prepare_any_size_and_refuse_broken_images():
    try:
        from sensor_msgs.msg import CompressedImage, Image

        from grasp_ros.ros.conversions import compressed_image_to_rgb, image_to_rgb, rgb_to_image
    except ImportError as exc:
        pytest.skip(f"ROS 2 messages are not importable: {exc}")
    frame = camera_frames(1)[0]
    for encoding in ("rgb8", "bgr8", "rgba8", "bgra8"):
        msg = rgb_to_image(frame, encoding)
        assert np.array_equal(image_to_rgb(msg), frame)                      # size 0: as it is
        assert np.array_equal(image_to_rgb(msg, SIZE, "stretch"), prepare_image(frame, SIZE, "stretch"))
    compressed = CompressedImage(format="png", data=png(frame))
    assert np.array_equal(compressed_image_to_rgb(compressed, SIZE), prepare_image(frame, SIZE))
    with pytest.raises(ValueError, match="unsupported image encoding 'nv21'"):
        image_to_rgb(Image(height=4, width=5, step=10, encoding="nv21", data=bytes(40)), SIZE)
    with pytest.raises(ValueError, match="cannot read the compressed image.*frame header"):
        compressed_image_to_rgb(CompressedImage(format="jpeg", data=b"\xff\xd8junk"), SIZE)
    with pytest.raises(ValueError, match="crop must be one of"):
        image_to_rgb(rgb_to_image(frame), SIZE, "squash")
