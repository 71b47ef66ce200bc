"""What a simulator's /clock costs the controller: the CPU of its executor thread (and of the
clock follower's, ``grasp_ros.ros.sim_clock``) while /clock streams at each rate, with the node's
/clock taken by the follower and, in the same run, by the executor (rclpy's time source, as
before the follower). Active on sim time with the analytic model and no goal (STALE cycles: no
planning), joint_states at 50 Hz.

    .venv/bin/python tools/clock_load.py --rates 100 1000 --json docs/benchmarks/clock_load/clock_load.json

Prints a Markdown table; writes JSON rows ``{"bench": "clock_load", ...}`` (../shared/BENCH_FORMAT.md).
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import rclpy
from builtin_interfaces.msg import Time
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.time_source import TimeSource
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from grasp_ros.bench.results import machine_info, markdown_table, write_bench_json  # noqa: E402
from grasp_ros.ros.controller_node import GraspController  # noqa: E402


def thread_seconds(tid: int) -> float:
    """CPU seconds (user + system) of thread ``tid`` of this process."""
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(clock_hz: float, path: str, seconds: float) -> dict:
    """One run: a controller, its executor on a thread, a feeder of /clock and joint_states."""
    context = Context()
    rclpy.init(context=context, args=["clock_load", "--ros-args", "-p", "model:=analytic", "-p", "use_sim_time:=true",
                                      "-p", 'model_options:="{env: wall_door, horizon: 50, observe: joints}"'])
    node = GraspController(context=context)
    follower_tid = None
    if path == "executor":       # rclpy's own time source: /clock on the node, its executor wakes
        node._clock_follower.stop()
        node._clock_follower = None
        source = TimeSource(node=node)
        source.ros_time_is_active = True
        source.attach_clock(node.get_clock())
    else:
        follower_tid = node._clock_follower._thread.native_id
    assert node.start(), "the controller did not start"
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    stop, ids = threading.Event(), {}

    def spin():
        ids["executor"] = threading.get_native_id()
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
    spinner = threading.Thread(target=spin)
    spinner.start()
    feeder = Node("clock_load_feeder", context=context)
    clock_pub = feeder.create_publisher(Clock, "/clock", 10)
    joints_pub = feeder.create_publisher(JointState, "joint_states", 10)
    time.sleep(2.0)                                        # discovery
    start, busy0 = time.monotonic(), thread_seconds(ids["executor"])
    follow0 = thread_seconds(follower_tid) if follower_tid else 0.0
    every, k = max(1, round(clock_hz / 50.0)), 0
    while time.monotonic() - start < seconds:
        k += 1
        ns = int(k * 1e9 / clock_hz)
        stamp = Time(sec=ns // 10**9, nanosec=ns % 10**9)
        clock_pub.publish(Clock(clock=stamp))
        if k % every == 0:
            msg = JointState(name=["x", "y"], position=[0.1, 0.2])
            msg.header.stamp = stamp
            joints_pub.publish(msg)
        time.sleep(max(0.0, start + k / clock_hz - time.monotonic()))
    elapsed = time.monotonic() - start
    executor_cpu = (thread_seconds(ids["executor"]) - busy0) / elapsed
    follower_cpu = (thread_seconds(follower_tid) - follow0) / elapsed if follower_tid else 0.0
    followed = node.get_clock().now().nanoseconds / 1e9
    stop.set()
    spinner.join()
    node.trigger_shutdown()
    executor.shutdown()
    node.destroy_node()
    feeder.destroy_node()
    rclpy.shutdown(context=context)
    return {"bench": "clock_load", "clock_hz": clock_hz, "clock": path, "seconds": round(elapsed, 2),
            "clock_messages": k, "executor_cpu": executor_cpu, "follower_cpu": follower_cpu,
            "total_cpu": executor_cpu + follower_cpu, "clock_followed": abs(followed - k / clock_hz) < 0.05}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 1000.0], help="/clock rates (Hz)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds a run")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    machine = machine_info()
    rows = [measure(hz, path, args.seconds) for hz in args.rates for path in ("executor", "follower")]
    print(markdown_table(rows, [("clock_hz", "/clock Hz", "g"), ("clock", "/clock taken by"),
                                ("executor_cpu", "executor thread, cores", ".3f"),
                                ("follower_cpu", "follower thread, cores", ".3f"),
                                ("total_cpu", "total, cores", ".3f"), ("clock_followed", "clock followed")]))
    if args.json:
        print("wrote", write_bench_json(args.json, rows, machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
