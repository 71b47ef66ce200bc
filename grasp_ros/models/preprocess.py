"""Camera frames to the model's input: one path for the rosbag importer and the controller node.

A frame is decoded to RGB uint8 [h, w, 3] (``decode_raw`` for sensor_msgs/Image fields,
``decode_compressed`` for sensor_msgs/CompressedImage), then ``prepare_image`` makes it the
model's S x S input. The training data and the live node call these same functions, so a model
trained from a bag sees, bit for bit, what the node feeds it from the same camera.

Preparation, by ``crop``:

* ``center``: the largest centred square of the frame (odd leftovers go to the bottom and right),
  resized to S x S; the aspect is kept and the edges of a wide or tall frame are lost.
* ``stretch``: the whole frame resized to S x S; nothing is lost, the aspect is not kept.

Resizing is ``cv2.INTER_AREA`` when no side grows (the pixel-area average: no aliasing when a
camera frame is shrunk to a small model input) and ``cv2.INTER_LINEAR`` otherwise (INTER_AREA
degrades to nearest-neighbour when enlarging). A frame already S x S after the crop is not
resampled.

Pure numpy and OpenCV: no ROS import. Every refusal is a ``ValueError`` naming the problem.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping

MAX_PIXELS = 25_000_000
"""Largest frame accepted, raw or compressed (a 6000 x 4000 photo): a few hundred bytes of PNG can
claim 8192 x 8192 16-bit RGBA, half a gigabyte and seconds to decode on the executor's thread,
and a raw 8000 x 8000 mono8 frame (61 MiB, under the message limit) held it over a second
(an adversarial audit: the watchdog stopped the robot, as it must, but no cycle ran)."""

# OpenCV's own cap on the pixels it decodes, read once as cv2 loads (so it holds where this
# module loads cv2 first: the node, the importer; an environment's own value stands). A second
# line behind the header checks below, which hold only while they read a file as the decoder
# does: an audit's JPEG showed them 1 x 1 and libjpeg 65500 x 60000.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from .image_headers import compressed_image_header  # noqa: E402

PIXEL_ENCODINGS = {"rgb8": (3, None), "bgr8": (3, cv2.COLOR_BGR2RGB), "rgba8": (4, cv2.COLOR_RGBA2RGB),
                   "bgra8": (4, cv2.COLOR_BGRA2RGB), "mono8": (1, cv2.COLOR_GRAY2RGB),
                   "mono16": (1, cv2.COLOR_GRAY2RGB), "rgb16": (3, None), "bgr16": (3, cv2.COLOR_BGR2RGB),
                   "rgba16": (4, cv2.COLOR_RGBA2RGB), "bgra16": (4, cv2.COLOR_BGRA2RGB)}
"""sensor_msgs/Image encodings of whole pixels: name -> (channels, the OpenCV conversion to RGB:
a pure move of bytes, None for RGB). 16-bit ones keep their top 8 bits (the full 16-bit range
scaled to 8 bits)."""

CONVERTED_ENCODINGS = {
    "bayer_rggb8": (1, cv2.COLOR_BayerRGGB2RGB), "bayer_bggr8": (1, cv2.COLOR_BayerBGGR2RGB),
    "bayer_gbrg8": (1, cv2.COLOR_BayerGBRG2RGB), "bayer_grbg8": (1, cv2.COLOR_BayerGRBG2RGB),
    "yuv422": (2, cv2.COLOR_YUV2RGB_UYVY), "yuv422_yuy2": (2, cv2.COLOR_YUV2RGB_YUY2),
    "uyvy": (2, cv2.COLOR_YUV2RGB_UYVY), "yuyv": (2, cv2.COLOR_YUV2RGB_YUY2)}
"""Encodings a camera driver sends as it reads them (raw Bayer mosaics, 4:2:2 YUV: "uyvy" and
"yuyv", sensor_msgs' names since Jazzy, which a USB camera's driver sends; "yuv422" (UYVY) and
"yuv422_yuy2" (YUYV), their older names): name -> (bytes per pixel, the OpenCV conversion to
RGB, its bilinear demosaicing for Bayer)."""
YUV422 = tuple(name for name, (size, _) in CONVERTED_ENCODINGS.items() if size == 2)
"""The 4:2:2 encodings (two bytes a pixel): two pixels share U and V."""

ENCODINGS = (*PIXEL_ENCODINGS, *CONVERTED_ENCODINGS)
"""Every sensor_msgs/Image encoding ``decode_raw`` reads."""

CROPS = ("center", "stretch")
MAX_SIDE = 8192
"""Largest frame side and model input side accepted (px): beyond it a header is taken for a lie."""
MAX_DECODED_BYTES = 3 * MAX_PIXELS
"""Largest decoded compressed frame: the 8-bit colour of the largest one (a 16-bit RGBA PNG of
as many pixels decodes to 200 MB, over a second here)."""
MAX_JPEG_SCANS = 100
"""Most scans a JPEG may have (baseline 1, the usual progressive scripts about 10): each scan is
a pass over the whole picture, and a few hundred kB can hold ten thousand of them."""


def decode_raw(encoding: str, height: int, width: int, step: int, data: Any,
               is_bigendian: bool = False) -> np.ndarray:
    """RGB uint8 [height, width, 3] of a raw image (sensor_msgs/Image's fields).

    ``step`` is the bytes per row; rows may be padded (step > width x bytes per pixel) and the
    padding is dropped. ``data`` is any byte buffer (bytes, array.array, uint8 ndarray) of
    exactly step x height bytes. ``is_bigendian`` matters for 16-bit encodings only.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}; expected one of "
                         f"{', '.join(ENCODINGS)}")
    channels, to_rgb = PIXEL_ENCODINGS.get(encoding) or CONVERTED_ENCODINGS[encoding]
    depth = 2 if encoding.endswith("16") else 1
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ValueError(f"empty image ({width}x{height})")
    if encoding in YUV422 and width % 2:
        raise ValueError(f"a {encoding} image needs an even width (two pixels share U and V), got {width}")
    row = width * channels * depth
    if step < row:
        raise ValueError(f"image step {step} is less than width x bytes per pixel = {row}")
    buffer = _byte_array(data)
    if buffer.size != step * height:
        raise ValueError(f"image has {buffer.size} bytes of data, expected step x height = "
                         f"{step * height}")
    _check_side(width, height, "image")
    if width * height > MAX_PIXELS:
        raise ValueError(f"image is {width}x{height}: more than {MAX_PIXELS} pixels")
    rows = buffer.reshape(height, step)[:, :row]
    if depth == 2:
        rows = (rows.view(">u2" if is_bigendian else "<u2") >> 8).astype(np.uint8)
    pixels = rows.reshape(height, width, channels)
    if to_rgb is None:
        # A fresh array, never a view of the message's buffer (which the middleware may reuse).
        return np.array(pixels, copy=True, order="C")
    if encoding in CONVERTED_ENCODINGS:     # OpenCV reads a mosaic as [h, w], 4:2:2 as [h, w, 2]
        pixels = np.ascontiguousarray(pixels[..., 0] if channels == 1 else pixels)
    # OpenCV makes a new array; its channel moves took 0.1 ms for a 1920 x 1080 frame where numpy's
    # fancy indexing (pixels[..., order]) took 12, on the executor's thread for every frame.
    try:
        return cv2.cvtColor(pixels, to_rgb)
    except cv2.error as exc:
        raise ValueError(f"cannot convert the {width}x{height} {encoding} image: "
                         f"{str(exc).strip().splitlines()[-1]}") from exc


def decode_compressed(format: str, data: Any) -> np.ndarray:
    """RGB uint8 [h, w, 3] of a compressed image (sensor_msgs/CompressedImage's fields).

    ``format`` as ROS writes it: "jpeg", "png", or image_transport's "rgb8; jpeg compressed bgr8"
    (the container, JPEG, PNG or TIFF, is told by the bytes; grey, alpha and 16-bit PNGs are read
    too). What its header claims (its size, the bytes it decodes to, a JPEG's scans) is checked
    before decoding. The compressedDepth transport (a
    depth header before the PNG) is refused.
    """
    if "compresseddepth" in format.lower():
        raise ValueError(f"compressed image format {format!r} (compressedDepth) is not supported: "
                         "use the compressed or raw transport")
    buffer = _byte_array(data)
    if buffer.size == 0:
        raise ValueError(f"compressed image ({format!r}) has no data")
    try:
        header = compressed_image_header(buffer.tobytes())   # a JPEG's scans: counted over all of it
    except ValueError as exc:
        raise ValueError(f"cannot read the compressed image (format {format!r}, {buffer.size} "
                         f"bytes): {exc}") from exc
    # Before decoding, what decoding would cost: a small file can claim a lot.
    width, height = header.width, header.height
    _check_side(width, height, "compressed image")
    if width * height > MAX_PIXELS:
        raise ValueError(f"compressed image is {width}x{height}: more than {MAX_PIXELS} pixels")
    if header.decoded_bytes > MAX_DECODED_BYTES:
        raise ValueError(f"compressed image is {width}x{height} and decodes to {header.decoded_bytes} "
                         f"bytes: more than {MAX_DECODED_BYTES} (send 8-bit colour or fewer pixels)")
    if header.scans > MAX_JPEG_SCANS:
        raise ValueError(f"compressed image is a JPEG of {header.scans} scans: more than {MAX_JPEG_SCANS} "
                         "(each is a pass over the whole picture)")
    try:
        decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:    # OpenCV's own size cap, or its allocation failing
        raise ValueError(f"cannot decode the compressed image (format {format!r}, {buffer.size} "
                         f"bytes): {str(exc).strip().splitlines()[-1]}") from exc
    if decoded is None:
        raise ValueError(f"cannot decode the compressed image (format {format!r}, {buffer.size} "
                         "bytes): corrupt or not an image OpenCV reads")
    if decoded.dtype == np.uint16:
        decoded = (decoded >> 8).astype(np.uint8)
    elif decoded.dtype != np.uint8:
        raise ValueError(f"compressed image ({format!r}) decodes to {decoded.dtype} pixels; "
                         "expected 8 or 16 bits")
    height, width = decoded.shape[:2]
    if (width, height) != (header.width, header.height):    # the checks above read another frame
        raise ValueError(f"compressed image decodes to {width}x{height} where its header says "
                         f"{header.width}x{header.height}: a malformed or crafted file")
    channels = 1 if decoded.ndim == 2 else decoded.shape[2]
    to_rgb = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}.get(channels)
    if to_rgb is None:
        raise ValueError(f"compressed image ({format!r}) has {channels} channels; expected 1, 3 or 4")
    return cv2.cvtColor(decoded, to_rgb)


def prepare_image(rgb: np.ndarray, size: int, crop: str = "center") -> np.ndarray:
    """The model's input, RGB uint8 [size, size, 3], of a frame RGB uint8 [h, w, 3] (any h, w)."""
    _check_settings(size, crop)
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 [h, w, 3] frame, got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"empty image ({width}x{height})")
    if crop == "center":
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        rgb = rgb[top:top + side, left:left + side]
        height = width = side
    if (height, width) != (size, size):
        shrink = size <= height and size <= width
        rgb = cv2.resize(rgb, (size, size),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb)


@dataclass(frozen=True)
class ImagePreprocessing:
    """How camera frames become a model's input; what a model trained on them needs at run time."""

    size: int
    """S: the side of the square RGB input."""
    crop: str = "center"
    """center (largest centred square, then resized) or stretch (whole frame resized)."""

    def __post_init__(self):
        _check_settings(self.size, self.crop)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return prepare_image(rgb, self.size, self.crop)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ImagePreprocessing":
        unknown = sorted(set(values) - {"size", "crop"})
        if unknown:
            raise ValueError(f"image preprocessing has unknown keys {unknown}; expected size, crop")
        if "size" not in values:
            raise ValueError("image preprocessing needs a size")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_settings(size: Any, crop: Any) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= MAX_SIDE:
        raise ValueError(f"image size must be an integer in [1, {MAX_SIDE}], got {size!r}")
    if crop not in CROPS:
        raise ValueError(f"image crop must be one of {', '.join(CROPS)}, got {crop!r}")


def _check_side(width: int, height: int, what: str) -> None:
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ValueError(f"{what} is {width}x{height}: larger than {MAX_SIDE} px per side")


def _byte_array(data: Any) -> np.ndarray:
    """A flat uint8 view of a message's data field (no copy where the buffer allows)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ValueError(f"image data must be uint8 bytes, got {data.dtype}")
        return data.reshape(-1)
    try:
        return np.frombuffer(data, np.uint8)
    except TypeError:        # a list of ints (a message built by hand)
        return np.asarray(data, np.uint8).reshape(-1)
