"""How many of a camera's raw frames reach a subscriber on this host, by frame size and by the
camera's and the subscriber's reliability: a publisher process sends bgr8 frames at 30 Hz, this
process counts what arrives (and how old it is) for 10 s. The controller reads its camera
best effort by default (REP 2003's subscriber side); ``grasp_ros.ros.delivery`` says when that
loses frames, and which QoS override brings them.

    .venv/bin/python tools/camera_transport.py --json docs/benchmarks/camera_transport/camera_transport.json

Prints a Markdown table; writes JSON rows ``{"bench": "camera_transport", ...}``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.utilities import get_rmw_implementation_identifier
from sensor_msgs.msg import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from grasp_ros.bench.results import machine_info, write_bench_files  # noqa: E402
from grasp_ros.ros import qos  # noqa: E402

SIZES = ((640, 480), (1280, 720), (1920, 1080))
RATE_HZ = 30.0
TOPIC = "/camera_transport/image"


def profile(reliability: str) -> QoSProfile:
    if reliability == "best_effort":
        return qos.SENSOR                                       # the controller's camera reader
    return QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


def publish(width: int, height: int, reliability: str, seconds: float) -> None:
    """The camera: bgr8 frames at RATE_HZ for ``seconds``."""
    rclpy.init()
    node = rclpy.create_node("camera_transport_camera")
    pub = node.create_publisher(Image, TOPIC, profile(reliability))
    msg = Image(height=height, width=width, encoding="bgr8", step=width * 3,
                data=np.random.default_rng(0).integers(0, 256, width * height * 3, np.uint8).tobytes())

    def send():
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
    node.create_timer(1.0 / RATE_HZ, send)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.01)
    rclpy.shutdown()


def measure(width: int, height: int, camera: str, reader: str, seconds: float) -> dict:
    camera_proc = subprocess.Popen([sys.executable, __file__, "--camera", f"{width}x{height}", camera,
                                    str(seconds + 5.0)])
    node = rclpy.create_node("camera_transport_reader")
    ages: list[float] = []

    def take(msg: Image) -> None:
        ages.append(time.time() - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))
    node.create_subscription(Image, TOPIC, take, profile(reader))
    settle = time.monotonic() + 3.0                 # discovery and the first frames
    while time.monotonic() < settle:
        rclpy.spin_once(node, timeout_sec=0.01)
    ages.clear()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.01)
    node.destroy_node()
    camera_proc.wait()
    return {"bench": "camera_transport", "width": width, "height": height, "encoding": "bgr8",
            "rate_hz": RATE_HZ, "camera": camera, "reader": reader,
            "received_per_s": len(ages) / seconds, "received_share": len(ages) / (seconds * RATE_HZ),
            "age_ms_p50": float(np.median(ages) * 1e3) if ages else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("bench_out/camera_transport.json"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--camera", nargs=3, help=argparse.SUPPRESS)    # the publisher process
    args = parser.parse_args()
    if args.camera:
        width, height = (int(v) for v in args.camera[0].split("x"))
        publish(width, height, args.camera[1], float(args.camera[2]))
        return 0
    machine = machine_info()
    rclpy.init()
    rows = [measure(w, h, camera, reader, args.seconds) for w, h in SIZES
            for camera, reader in (("reliable", "best_effort"), ("best_effort", "best_effort"),
                                   ("reliable", "reliable"))]
    rclpy.shutdown()
    write_bench_files(args.json, rows, machine,
                      f"Raw camera frames received on one host ({get_rmw_implementation_identifier()}, defaults)",
                      [("width", "width"), ("height", "height"), ("camera", "camera"), ("reader", "reader"),
                       ("received_per_s", "frames/s received", ".1f"), ("received_share", "of 30", ".0%"),
                       ("age_ms_p50", "age ms (median)", ".0f")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
