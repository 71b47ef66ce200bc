"""The sim node: its ROS-free core (hold, watchdog, episodes), then the node over real DDS.

The DDS tests run the node in this process with a test node beside it, both on one executor
(so the sim's wall-clock tick runs whenever the test spins). The domain comes from the
environment (`make test` picks a private one per run).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest

try:  # ImportError too: e.g. rclpy without an RMW library
    import rclpy
except ImportError as exc:
    pytest.skip(f"rclpy (ROS 2) is not importable: {exc}", allow_module_level=True)

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy,  # noqa: E402
                       qos_profile_sensor_data)
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from grasp_ros.msg import JointGoal  # noqa: E402
from grasp_ros.sim.node import NS, SimCore, SimNode, SimSettings  # noqa: E402

STEP_NS = NS // 10   # physics at 10 Hz (the default)


# --- the core, without ROS -------------------------------------------------------------------

def kinds(events, *wanted):
    return [e for e in events if e.kind in wanted]


def test_core_holds_the_last_command_between_steps_and_clips_it():
    core = SimCore(SimSettings(env="open", seed=3))
    start = core.env.position.copy()
    core.advance(0)
    assert core.command([5.0, 0.0], 0) is None          # clipped to [1, 0], not rejected
    events = core.advance(3 * STEP_NS)
    joints = kinds(events, "joints")
    assert [e.t_ns for e in joints] == [STEP_NS, 2 * STEP_NS, 3 * STEP_NS]
    assert joints[-1].data["command"] == [1.0, 0.0]
    moved = np.asarray(joints[-1].data["position"]) - start
    assert moved == pytest.approx([3 * core.env.max_step, 0.0], abs=1e-6)
    assert joints[-1].data["velocity"] == pytest.approx([core.env.max_step * 10, 0.0])


@pytest.mark.parametrize("bad", [[1.0], [1.0, 0.0, 0.0], [math.nan, 1.0], [1.0, math.inf]])
def test_core_holds_zero_after_a_malformed_command(bad):
    core = SimCore(SimSettings(env="open", seed=3))
    core.command([1.0, 1.0], 0)
    core.advance(STEP_NS)
    assert core.command(bad, STEP_NS) is not None
    before = core.env.position.copy()
    core.advance(3 * STEP_NS)
    np.testing.assert_allclose(core.env.position, before)


def test_core_watchdog_zeroes_a_stale_command_and_reports_it():
    core = SimCore(SimSettings(env="open", seed=3, command_timeout=0.25))
    core.command([1.0, 0.0], 0)
    events = core.advance(10 * STEP_NS)
    trips = kinds(events, "watchdog")
    assert [(e.t_ns, e.data["tripped"]) for e in trips] == [(3 * STEP_NS, True)]
    xs = [e.data["position"][0] for e in kinds(events, "joints")]
    assert xs[2] > xs[1] > xs[0] and xs[3:] == [xs[2]] * (len(xs) - 3)  # moved 2 steps, then held
    core.command([1.0, 0.0], 10 * STEP_NS)
    assert kinds(core.advance(11 * STEP_NS), "watchdog")[0].data["tripped"] is False


def test_core_first_episode_waits_for_a_command_then_episodes_follow_and_finish():
    core = SimCore(SimSettings(env="open", episodes=2, max_episode_time=0.5))
    events = core.advance(20 * STEP_NS)                   # nobody commands: nothing is timed
    assert [e.kind for e in kinds(events, "start", "end")] == ["start"]
    core.command([0.0, 0.0], 20 * STEP_NS)
    events = core.advance(40 * STEP_NS)
    reports = [(e.kind, e.t_ns / NS, e.data.get("episode")) for e in kinds(events, "start", "end", "done")]
    assert reports == [("end", 2.5, 0), ("start", 2.5, 1), ("end", 3.0, 1), ("done", 3.0, None)]
    end = kinds(events, "end")[0].data
    assert end["success"] is False and end["time_to_goal"] is None and end["duration"] == 0.5
    assert core.done


def test_core_reports_success_and_time_to_goal():
    core = SimCore(SimSettings(env="open", seed=5, episodes=1))
    core.command([0.0, 0.0], 0)
    t = 0
    while not core.done and t < 100 * STEP_NS:
        direction = (core.env.goal - core.env.position) / core.env.max_step
        core.command(np.clip(direction, -1, 1), t)
        t += STEP_NS
        events = core.advance(t)
    (end,) = kinds(events, "end")
    assert end.data["success"] is True
    assert end.data["time_to_goal"] == pytest.approx(end.data["steps"] / 10)
    assert end.data["final_distance"] <= core.env.success_radius


def test_settings_are_validated():
    with pytest.raises(ValueError, match="env"):
        SimSettings(env="nowhere").validate()
    with pytest.raises(ValueError, match="clock_period"):
        SimSettings(physics_rate_hz=2000.0, clock_period=0.001).validate()


# --- the node over real DDS ------------------------------------------------------------------

class Rig:
    """The sim node and a probe node in one context, spun together by ``spin_until``."""

    def __init__(self, command_publisher: bool = True, **params):
        self.context = Context()
        rclpy.init(context=self.context)
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        self.sim = SimNode(context=self.context, parameter_overrides=overrides)
        self.probe = rclpy.create_node("sim_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.sim)
        self.executor.add_node(self.probe)
        self.got = {k: [] for k in ("clock", "image", "joints", "goal", "goal_image", "episode")}
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        reports = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        sub = self.probe.create_subscription
        sub(Clock, "/clock", self.got["clock"].append, qos_profile_sensor_data)
        sub(Image, "image", self.got["image"].append, qos_profile_sensor_data)
        sub(JointState, "joint_states", self.got["joints"].append, 10)
        sub(JointGoal, "/goal_state", self.got["goal"].append, latched)
        sub(Image, "/goal_image", self.got["goal_image"].append, latched)
        sub(String, "/grasp_sim/episode", lambda m: self.got["episode"].append(json.loads(m.data)),
            reports)
        if command_publisher:
            self.add_command_publisher()

    def add_command_publisher(self) -> None:
        self.command_pub = self.probe.create_publisher(Float64MultiArray, "command", 10)

    def spin_until(self, predicate, timeout: float = 10.0, every=None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if every is not None:
                every()
            self.executor.spin_once(timeout_sec=0.01)
        return predicate()

    def command(self, *values) -> None:
        self.command_pub.publish(Float64MultiArray(data=[float(v) for v in values]))

    def position(self) -> np.ndarray:
        return np.asarray(self.got["joints"][-1].position)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.sim.destroy_node()
        self.probe.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def rig(request):
    rigs = []

    def make(**params):
        rigs.append(Rig(**params))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def test_node_publishes_clock_sensors_and_goal(rig):
    r = rig(env="wall_door", seed=7, rate_factor=4.0)
    assert r.spin_until(lambda: len(r.got["clock"]) > 20 and r.got["image"] and r.got["joints"]
                        and r.got["goal"] and r.got["goal_image"] and r.got["episode"])
    ts = [c.clock.sec + c.clock.nanosec / NS for c in r.got["clock"]]
    assert all(b > a for a, b in zip(ts, ts[1:])), "sim time must only move forward"

    image = r.got["image"][-1]
    assert (image.height, image.width, image.encoding, image.step) == (64, 64, "rgb8", 192)
    assert len(image.data) == 64 * 64 * 3
    joints = r.got["joints"][-1]
    assert list(joints.name) == ["x", "y"] and len(joints.position) == 2

    episode = r.sim.core.env.sample_episode(7)
    goal = r.got["goal"][-1]
    assert list(goal.name) == ["x", "y"]
    np.testing.assert_allclose(goal.position, episode.goal)
    np.testing.assert_allclose(joints.position, episode.start)
    goal_pixels = np.frombuffer(bytes(r.got["goal_image"][-1].data), np.uint8).reshape(64, 64, 3)
    np.testing.assert_array_equal(goal_pixels, r.sim.core.env.render(episode.goal))
    start = r.got["episode"][0]
    assert start["event"] == "start" and start["seed"] == 7 and start["goal"] == pytest.approx(list(episode.goal))


@pytest.mark.parametrize("kind", ["command", "joint_trajectory"])
def test_sim_time_waits_for_a_command_publisher(rig, kind):
    """Either command: a controller with the joint_trajectory output never started the sim (a
    stall audit had to set wait_for_controller false)."""
    r = rig(command_publisher=False, env="open", rate_factor=4.0)
    assert r.spin_until(lambda: r.got["goal"])
    r.spin_until(lambda: False, timeout=0.5)
    assert r.got["clock"] == [] and r.sim.core.now_ns == 0
    if kind == "command":
        r.add_command_publisher()
    else:
        r.probe.create_publisher(JointTrajectory, "joint_trajectory", 10)
    assert r.spin_until(lambda: len(r.got["clock"]) > 5)
    assert r.got["clock"][-1].clock.nanosec > 0


def test_sim_time_waits_for_the_named_subscribers(rig):
    r = rig(env="open", wait_for_controller=False, lockstep=True,
            wait_for_subscribers=" late_watcher , ")
    assert r.spin_until(lambda: r.got["goal"])
    r.spin_until(lambda: False, timeout=0.5)        # sim_probe subscribes, but is not awaited
    assert r.got["clock"] == [] and r.sim.core.now_ns == 0
    watcher = rclpy.create_node("late_watcher", context=r.context)
    seen = []
    watcher.create_subscription(JointState, "joint_states", seen.append, 10)
    r.executor.add_node(watcher)
    try:
        assert r.spin_until(lambda: r.got["clock"] and seen)
        # Its first message is the first step's: no step went before it (the state at 0 did).
        assert (seen[0].header.stamp.sec, seen[0].header.stamp.nanosec) == (0, r.sim.core.step_ns)
    finally:
        r.executor.remove_node(watcher)
        watcher.destroy_node()


def test_node_command_moves_the_agent_and_malformed_or_missing_commands_stop_it(rig):
    r = rig(env="open", seed=3, rate_factor=4.0, command_timeout=0.3)
    assert r.spin_until(lambda: r.got["joints"])
    start = r.position()
    step = r.sim.core.env.max_step

    # A steady command moves the agent by one max step per physics step.
    stamp = lambda: r.got["joints"][-1].header.stamp.sec + r.got["joints"][-1].header.stamp.nanosec / NS  # noqa: E731
    t0 = stamp()
    assert r.spin_until(lambda: stamp() >= t0 + 0.5, every=lambda: r.command(1.0, 0.0))
    moved = r.position() - start
    assert moved[0] >= 3 * step and abs(moved[1]) < 1e-9

    # Malformed (three values, then NaN): zero is held, the agent stops.
    for bad in ((1.0, 0.0, 0.0), (math.nan, 1.0)):
        r.command(1.0, 0.0)
        r.spin_until(lambda: False, timeout=0.2)
        t_bad = stamp()
        assert r.spin_until(lambda: stamp() >= t_bad + 0.5, every=lambda: r.command(*bad))
        held = r.position()
        t_held = stamp()
        assert r.spin_until(lambda: stamp() >= t_held + 0.3, every=lambda: r.command(*bad))
        np.testing.assert_allclose(r.position(), held, atol=1e-12)
    assert r.sim.rejected_commands > 0

    # Silence: after command_timeout the watchdog holds zero.
    before = r.position()
    r.command(-1.0, 0.0)
    assert r.spin_until(lambda: r.position()[0] < before[0])     # it arrived: the agent moves
    t_moving = stamp()
    assert r.spin_until(lambda: stamp() >= t_moving + 0.3 + 0.2)
    stopped = r.position()
    assert before[0] - stopped[0] <= (0.3 / 0.1 + 1) * step + 1e-9   # at most the timeout's steps
    t_stopped = stamp()
    assert r.spin_until(lambda: stamp() >= t_stopped + 0.5)
    np.testing.assert_allclose(r.position(), stopped, atol=1e-12)
    assert r.sim.core.watchdog_tripped


def test_node_reports_success_and_finishes(rig):
    r = rig(env="open", seed=11, episodes=1, exit_when_done=True, rate_factor=5.0)
    assert r.spin_until(lambda: r.got["joints"] and r.got["goal"])
    goal = np.asarray(r.got["goal"][-1].position)
    step = r.sim.core.env.max_step

    def steer():
        r.command(*np.clip((goal - r.position()) / step, -1.0, 1.0))

    assert r.spin_until(lambda: r.sim.finished, timeout=20.0, every=steer)
    assert r.spin_until(lambda: len(r.got["episode"]) >= 3)
    start, end, done = r.got["episode"][:3]
    assert (start["event"], end["event"], done["event"]) == ("start", "end", "done")
    assert end["success"] is True and end["time_to_goal"] > 0
    assert done == {**done, "episodes": 1, "successes": 1, "success_rate": 1.0}


def test_bad_parameter_exits_with_an_error():
    result = subprocess.run(
        [sys.executable, "-m", "grasp_ros.sim.node", "--ros-args", "-p", "env:=nowhere",
         "-p", "physics_rate_hz:=20.0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "env='nowhere'" in result.stderr + result.stdout
