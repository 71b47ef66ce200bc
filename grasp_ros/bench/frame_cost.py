"""What a camera frame costs the controller node: the message read from its bytes and made the
model's input, per camera format and size.

The node converts every frame as it arrives, on the executor's thread, beside the planner's
thread: on a robot's few cores that time is taken from planning.

    python -m grasp_ros.bench.frame_cost [--json docs/benchmarks/frame_cost/frame_cost.json]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from ..ros.conversions import compressed_image_to_rgb, image_to_rgb
from .results import machine_info, write_bench_files

SIZES = ((640, 480), (1280, 720), (1920, 1080))
RAW = ("rgb8", "bgr8", "bgra8", "mono8", "yuyv")
COMPRESSED = ("jpeg", "png")
INPUT_SIZE = 64
COLUMNS = [("format", "format"), ("width", "width"), ("height", "height"), ("kib", "message KiB", ".0f"),
           ("ms_p50", "ms a frame (median)", ".2f"), ("ms_p90", "p90", ".2f"),
           ("frames_per_s", "frames/s on one core", ".0f")]


def camera_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An RGB frame with a camera's texture (smooth shapes and noise: JPEG and PNG compress it
    as they would a real scene, not as they do noise or a flat colour)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    frame = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)


def camera_message(rgb: np.ndarray, fmt: str) -> tuple[bytes, type]:
    """The serialised message (CDR bytes, as the node's raw subscription gets them) of ``rgb`` in
    ``fmt``, and its type."""
    height, width = rgb.shape[:2]
    if fmt in COMPRESSED:
        ok, data = cv2.imencode("." + fmt, np.ascontiguousarray(rgb[..., ::-1]))
        assert ok
        return serialize_message(CompressedImage(format=fmt, data=data.tobytes())), CompressedImage
    if fmt == "rgb8":
        pixels = rgb
    elif fmt == "bgr8":
        pixels = rgb[..., ::-1]
    elif fmt == "bgra8":
        pixels = np.concatenate([rgb[..., ::-1], np.full_like(rgb[..., :1], 255)], axis=2)
    elif fmt == "mono8":
        pixels = rgb[..., 1:2]
    else:                                           # yuyv: two pixels share U and V
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2)
    pixels = np.ascontiguousarray(pixels)
    step = pixels.nbytes // height
    return serialize_message(Image(height=height, width=width, encoding=fmt, step=step,
                                   data=pixels.tobytes())), Image


def convert(data: bytes, msg_type: type) -> np.ndarray:
    """What the node does with a frame's bytes: read the message, make the model's input."""
    msg = deserialize_message(data, msg_type)
    to_rgb = compressed_image_to_rgb if msg_type is CompressedImage else image_to_rgb
    return to_rgb(msg, INPUT_SIZE, "center")


def measure(fmt: str, width: int, height: int, repeats: int) -> dict:
    data, msg_type = camera_message(camera_frame(width, height), fmt)
    convert(data, msg_type)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        convert(data, msg_type)
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1e3
    return {"bench": "frame_cost", "format": fmt, "width": width, "height": height,
            "input_size": INPUT_SIZE, "kib": len(data) / 1024, "repeats": repeats,
            "ms_p50": float(np.median(ms)), "ms_p90": float(np.percentile(ms, 90)),
            "frames_per_s": 1e3 / float(np.median(ms))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grasp_ros.bench.frame_cost",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("bench_out/frame_cost.json"))
    parser.add_argument("--quick", action="store_true", help="640 x 480 only, fewer repeats")
    parser.add_argument("--label", default="", help="written into every row as 'code' (e.g. a commit)")
    args = parser.parse_args(argv)
    machine = machine_info()
    sizes = SIZES[:1] if args.quick else SIZES
    rows = [measure(fmt, w, h, 5 if args.quick else 30)
            for w, h in sizes for fmt in (*RAW, *COMPRESSED)]
    for row in rows:
        row["code"] = args.label or None
    write_bench_files(args.json, rows, machine,
                      f"Camera frame cost in the controller node (model input {INPUT_SIZE} px)", COLUMNS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
