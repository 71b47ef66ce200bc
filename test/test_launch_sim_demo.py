"""launch/sim_demo.launch.py under launch_pytest: the sim and the controller close the loop.

Needs a ROS 2 install with launch_pytest and this package built and sourced (the launch file
starts the installed `grasp_sim` and `grasp_controller` executables); skipped elsewhere, e.g.
with ROS 2 from pip wheels, which have no launch packages.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

launch_pytest = pytest.importorskip("launch_pytest")

from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "sim_demo.launch.py"
TIMEOUT_S = 90.0


@launch_pytest.fixture
def sim_demo():
    """One episode on the open world. The launch keeps running after it (exit_when_done is
    false): launch_pytest, not the launch file, ends it after the test."""
    return LaunchDescription([
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
            launch_arguments={"env": "open", "model": "analytic", "observation": "joints",
                              "seed": "4", "episodes": "1", "max_episode_time": "30.0"}.items()),
        launch_pytest.actions.ReadyToTest(),
    ])


def wait_for_reports(timeout: float) -> list[dict]:
    """The sim's episode reports, until its "done" report or the timeout."""
    context = Context()
    rclpy.init(context=context)
    reports, done = [], threading.Event()

    def on_report(msg: String) -> None:
        reports.append(json.loads(msg.data))
        if reports[-1]["event"] == "done":
            done.set()

    node = rclpy.create_node("sim_demo_launch_test", context=context)
    node.create_subscription(String, "/grasp_sim/episode", on_report, QoSProfile(
        depth=100, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        while not done.is_set() and timeout > 0:
            executor.spin_once(timeout_sec=0.1)
            timeout -= 0.1
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return reports


@pytest.mark.launch(fixture=sim_demo)
def test_sim_demo_reaches_the_goal():
    reports = wait_for_reports(TIMEOUT_S)
    ends = [r for r in reports if r["event"] == "end"]
    assert ends, f"no episode ended within {TIMEOUT_S} s: {reports}"
    assert ends[0]["success"], ends[0]
    assert reports[-1] == {**reports[-1], "event": "done", "episodes": 1, "successes": 1}
