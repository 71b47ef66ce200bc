"""The planar arm: the MuJoCo env (tasks, limits, inertia, camera, posts), its exploration policy,
and the sim node running it over real DDS on sim time, in lock step."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

# The arm's package first: it picks MuJoCo's OpenGL backend before MuJoCo is imported.
pytest.importorskip("grasp_ros.sim.arm", reason="the arm needs MuJoCo (pip install mujoco)")
import mujoco  # noqa: E402

from grasp_ros.sim.arm import (ACTION_HIGH, ACTION_LOW, IMAGE_HEIGHT, IMAGE_WIDTH,  # noqa: E402
                               JOINT_HIGH, JOINT_LOW, JOINT_NAMES, ArmEnv, ArmTask)
from grasp_ros.sim.arm import env as arm  # noqa: E402
from grasp_ros.sim.explore import OUExplorer  # noqa: E402


@pytest.fixture(scope="module")
def env():
    e = ArmEnv()
    yield e
    e.close()


def start_at(env: ArmEnv, q) -> None:
    q = np.asarray(q, dtype=np.float64)
    env.reset(ArmTask(q, q, seed=-1, non_greedy=False))


def run(env: ArmEnv, policy, steps: int) -> np.ndarray:
    """Joint positions [steps, 3] after each step; ``policy``: a command, or position -> command."""
    visited = []
    for _ in range(steps):
        env.step(policy(env.position) if callable(policy) else policy)
        visited.append(env.position)
    return np.stack(visited)


# --- the env ---------------------------------------------------------------------------------

def test_same_seed_same_task_and_same_motion():
    a, b = ArmEnv(), ArmEnv()
    try:
        first, second = a.reset(7), b.reset(7)
        np.testing.assert_array_equal(first.start, second.start)
        np.testing.assert_array_equal(first.goal, second.goal)
        assert not np.array_equal(a.sample_task(8).start, a.task.start)
        actions = np.random.default_rng(0).uniform(ACTION_LOW, ACTION_HIGH, size=(20, 3))
        for action in actions:
            a.step(action)
            b.step(action)
        np.testing.assert_array_equal(a.position, b.position)
        np.testing.assert_array_equal(a.velocity, b.velocity)
        np.testing.assert_array_equal(a.observe().image, b.observe().image)
    finally:
        a.close()
        b.close()


def test_joint_limits_hold_under_saturating_commands(env):
    # Joints 2 and 3 with the arm pointing between the posts (+x): nothing else stops them.
    start_at(env, [0.0, 0.0, 0.0])
    up = run(env, [0.0, ACTION_HIGH[1], ACTION_HIGH[2]], 30)
    down = run(env, [0.0, ACTION_LOW[1], ACTION_LOW[2]], 30)
    # Joint 1 with the arm folded inside the posts.
    start_at(env, [0.0, arm.FOLD, arm.FOLD])
    turn_up = run(env, [ACTION_HIGH[0], 0.0, 0.0], 40)
    turn_down = run(env, [ACTION_LOW[0], 0.0, 0.0], 60)
    visited = np.concatenate([up, down, turn_up, turn_down])
    assert (visited <= JOINT_HIGH + arm.LIMIT_TOLERANCE).all()
    assert (visited >= JOINT_LOW - arm.LIMIT_TOLERANCE).all()
    # ... and the commands did drive each joint onto its limits
    np.testing.assert_allclose(up[-1, 1:], JOINT_HIGH[1:], atol=arm.LIMIT_TOLERANCE)
    np.testing.assert_allclose(down[-1, 1:], JOINT_LOW[1:], atol=arm.LIMIT_TOLERANCE)
    assert turn_up[-1, 0] == pytest.approx(JOINT_HIGH[0], abs=arm.LIMIT_TOLERANCE)
    assert turn_down[-1, 0] == pytest.approx(JOINT_LOW[0], abs=arm.LIMIT_TOLERANCE)


def test_velocity_lags_the_command_and_coasts_after_it(env):
    start_at(env, [-0.5, 0.0, 0.0])                      # stretched, clear of the posts
    full = ACTION_HIGH[0]
    env.step([full, 0.0, 0.0])
    v1 = env.velocity
    assert 0.3 * full < v1[0] < 0.9 * full               # one period is not enough to get there
    assert abs(v1[1]) > 0.1                              # accelerating joint 1 swings joint 2
    for _ in range(3):
        env.step([full, 0.0, 0.0])
    assert env.velocity[0] > 0.9 * full                   # ... a few are
    moving = env.position
    env.step([0.0, 0.0, 0.0])
    assert env.velocity[0] > 0.2 * full                   # momentum: still turning after a stop
    assert env.position[0] - moving[0] > 0.05


def test_camera_is_96_by_72_and_shows_the_end_effector_where_it_is(env):
    env.reset(3)
    obs = env.observe()
    assert obs.image.shape == (IMAGE_HEIGHT, IMAGE_WIDTH, 3) == (72, 96, 3)
    assert obs.image.dtype == np.uint8
    np.testing.assert_array_equal(obs.position, env.task.start)
    np.testing.assert_array_equal(obs.image, env.render_at(env.task.start))
    moved = env.render_at(env.task.start + np.array([0.4, 0.0, 0.0]))
    assert (np.abs(moved.astype(int) - obs.image).sum(-1) > 60).sum() > 20
    # The red end effector at the documented pixels: 40 px/m, image centre = world origin, +y up.
    red = (obs.image[..., 0] > 180) & (obs.image[..., 1] < 90) & (obs.image[..., 2] < 90)
    rows, cols = np.nonzero(red)
    x, y = env.end_effector()
    assert cols.mean() == pytest.approx((IMAGE_WIDTH - 1) / 2 + 40 * x, abs=1.5)
    assert rows.mean() == pytest.approx((IMAGE_HEIGHT - 1) / 2 - 40 * y, abs=1.5)


def test_posts_stop_the_links(env):
    start_at(env, [0.7, 0.0, 0.0])      # stretched, turning towards the north post at +pi/2
    depths, touched = [], False
    for _ in range(20):
        env.step([ACTION_HIGH[0], 0.0, 0.0])
        depths.append(env.clearance(env.position))
        touched |= env.data.ncon > 0
    assert touched
    assert min(depths) > -0.01          # a link sinks at most 1 cm into a post (soft contact)
    # Joint 1 got past the post's bearing only because the post bent the arm at joint 2 (the
    # servos yield under load): the stretched arm did not pass through it.
    assert env.position[0] > np.pi / 2 and abs(env.position[1]) > 0.5


def collides_in_mujoco(env: ArmEnv, q0, q1, samples: int = 400) -> bool:
    """MuJoCo's own collision detection (not ArmEnv's distance queries) along a joint-space line."""
    data = mujoco.MjData(env.model)
    for s in np.linspace(0.0, 1.0, samples):
        data.qpos[:] = (1 - s) * np.asarray(q0) + s * np.asarray(q1)
        mujoco.mj_forward(env.model, data)
        if any(data.contact[i].dist < 0 for i in range(data.ncon)):
            return True
    return False


def test_non_greedy_tasks_need_a_detour_and_have_one():
    hard, easy = ArmEnv(non_greedy_fraction=1.0), ArmEnv(non_greedy_fraction=0.0)
    try:
        for seed in range(3):
            task = hard.sample_task(seed)
            assert task.non_greedy
            for q in (task.start, task.goal):
                assert (JOINT_LOW <= q).all() and (q <= JOINT_HIGH).all()
                assert hard.clearance(q) >= arm.TASK_CLEARANCE
            assert collides_in_mujoco(hard, task.start, task.goal)   # straight line: blocked
            path = hard.detour(task.start, task.goal)                 # fold, turn, unfold: clear
            assert path is not None
            assert not any(collides_in_mujoco(hard, a, b) for a, b in zip(path, path[1:]))
            ee_gap = np.linalg.norm(hard.end_effector(task.goal) - hard.end_effector(task.start))
            assert ee_gap > 4 * hard.success_radius

            task = easy.sample_task(seed)
            assert not task.non_greedy and not collides_in_mujoco(easy, task.start, task.goal)
    finally:
        hard.close()
        easy.close()


def test_success_is_the_end_effector_near_the_goal(env):
    task = env.reset(5)
    assert not env.succeeded() and env.distance_to_goal() > 4 * env.success_radius
    outcomes = []
    for turn in (0.01, 0.6):            # joint 1 swings the tip about the base
        env.reset(ArmTask(task.goal + [turn, 0.0, 0.0], task.goal, seed=5, non_greedy=False))
        tip_gap = np.linalg.norm(env.end_effector() - env.end_effector(task.goal))
        assert env.distance_to_goal() == pytest.approx(tip_gap)
        outcomes.append(env.succeeded())
        assert outcomes[-1] == (tip_gap <= env.success_radius)
    assert outcomes == [True, False]


def test_bad_arguments_are_refused(env):
    with pytest.raises(ValueError, match="3 joint velocities"):
        env.step([1.0, 0.0])
    with pytest.raises(ValueError, match="dt"):
        ArmEnv(dt=0.0)


# --- exploration -----------------------------------------------------------------------------

def explorer(seed=0):
    return OUExplorer(ACTION_LOW, ACTION_HIGH, JOINT_LOW, JOINT_HIGH, dt=0.1, seed=seed)


def test_explorer_is_seeded_smooth_and_bounces_off_the_limits(env):
    q = np.zeros(3)
    a, b = explorer(1), explorer(1)
    commands = np.stack([a(q) for _ in range(200)])
    np.testing.assert_array_equal(commands, np.stack([b(q) for _ in range(200)]))
    assert ((commands >= ACTION_LOW) & (commands <= ACTION_HIGH)).all()
    for component in commands.T:                            # smooth, not white noise
        assert np.corrcoef(component[:-1], component[1:])[0, 1] > 0.8
    # Driving into a limit turns round, and stays turned.
    e = explorer(2)
    e._state = ACTION_HIGH.copy()
    at_limit = JOINT_HIGH - 0.05
    assert (e(at_limit) < 0).all() and (e(at_limit) < 0).all()
    # On the arm: a long run stays inside the limits.
    start_at(env, [0.0, arm.FOLD, arm.FOLD])
    e = explorer(3)
    visited = run(env, e, 300)
    assert (visited >= JOINT_LOW - arm.LIMIT_TOLERANCE).all()
    assert (visited <= JOINT_HIGH + arm.LIMIT_TOLERANCE).all()
    assert (visited.max(0) - visited.min(0) > 1.0).all()    # and it explores every joint


def test_explorer_default_draws_what_it_always_drew():
    # The commands of the explorer before rests existed (seed 1, at the origin): steps 0, 1, 299.
    q, e = np.zeros(3), explorer(1)
    commands = np.stack([e(q) for _ in range(300)])
    np.testing.assert_allclose(commands[[0, 1, 299]], [
        [-0.2542377054099218, 1.5804497454659705, 0.8558183322503266],
        [-0.47008611571897696, 1.7764314218824815, 1.0460103047445446],
        [0.19405567274500868, 0.9865409330252168, 0.16228286351668597]], rtol=0, atol=1e-12)
    assert not (commands == 0).all(axis=1).any()            # and never rests
    assert explorer(1).rest_probability == 0.0


def test_explorer_rests_hold_an_exact_zero_for_half_a_second_to_two(env):
    def rester(seed):
        return OUExplorer(ACTION_LOW, ACTION_HIGH, JOINT_LOW, JOINT_HIGH, dt=0.1, seed=seed,
                          rest_probability=0.02)

    q = np.zeros(3)
    a, b, plain = rester(1), rester(1), explorer(1)
    commands = np.stack([a(q) for _ in range(3000)])
    np.testing.assert_array_equal(commands, np.stack([b(q) for _ in range(3000)]))  # seeded
    assert not np.array_equal(commands, np.stack([rester(2)(q) for _ in range(3000)]))
    resting = (commands == 0).all(axis=1)
    # Stretches of 5-20 steps (0.5-2 s at 10 Hz); the first and last may be cut by the window.
    edges = np.flatnonzero(np.diff(np.r_[0, resting.astype(int), 0]))
    lengths = (edges[1::2] - edges[::2])[(edges[::2] > 0) & (edges[1::2] < len(resting))]
    assert len(lengths) > 20 and lengths.min() >= 5 and lengths.max() <= 20
    assert 0.12 < resting.mean() < 0.30                      # p d / (1 + p d) = 0.2
    # Outside the rests the OU process goes on as without them.
    np.testing.assert_array_equal(commands[~resting],
                                  np.stack([plain(q) for _ in range(3000)])[~resting])
    # On the arm a rest stops it: the servos brake it (momentum: about half a second), then it
    # stays.
    start_at(env, [0.0, arm.FOLD, arm.FOLD])
    e = rester(4)
    zeros_in_a_row, still = 0, 0
    for _ in range(400):
        command = e(env.position)
        env.step(command)
        zeros_in_a_row = zeros_in_a_row + 1 if (command == 0).all() else 0
        if zeros_in_a_row >= 8:
            assert np.abs(env.velocity).max() < 0.01
            still += 1
    assert still > 10
    with pytest.raises(ValueError, match="rest_probability"):
        OUExplorer(ACTION_LOW, ACTION_HIGH, JOINT_LOW, JOINT_HIGH, dt=0.1, rest_probability=1.5)


# --- the sim node over real DDS --------------------------------------------------------------

try:  # the env tests above run without ROS 2; these need rclpy and the built messages
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray, String
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from grasp_ros.msg import JointGoal
    from grasp_ros.sim.node import NS, SimNode
    ROS_MISSING = ""
except ImportError as exc:
    ROS_MISSING = f"ROS 2 is not importable: {exc}"

needs_ros = pytest.mark.skipif(bool(ROS_MISSING), reason=ROS_MISSING or "-")


class ArmRig:
    """The sim node (env arm, lock step) and a probe node on one executor."""

    def __init__(self, **params):
        self.context = Context()
        rclpy.init(context=self.context)
        params = {"env": "arm", "lockstep": True, "seed": 1, **params}
        self.sim = SimNode(context=self.context,
                           parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.probe = rclpy.create_node("arm_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.sim)
        self.executor.add_node(self.probe)
        self.got = {k: [] for k in ("clock", "image", "joints", "goal", "goal_image", "command",
                                    "episode")}
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        sub = self.probe.create_subscription
        sub(Clock, "/clock", self.got["clock"].append, qos_profile_sensor_data)
        sub(Image, "image", self.got["image"].append, qos_profile_sensor_data)
        sub(JointState, "joint_states", self.got["joints"].append, 100)
        sub(JointGoal, "/goal_state", self.got["goal"].append, latched)
        sub(Image, "/goal_image", self.got["goal_image"].append, latched)
        sub(Float64MultiArray, "command", self.got["command"].append, 100)
        sub(String, "/grasp_sim/episode", lambda m: self.got["episode"].append(json.loads(m.data)),
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL))

    def spin_until(self, predicate, timeout: float = 20.0, every=None) -> bool:
        """Spin until ``predicate``; ``timeout`` (wall) only ends a hung run, no test times it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate():
            if every is not None:
                every()
            self.executor.spin_once(timeout_sec=0.01)
        return predicate()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.sim.destroy_node()
        self.probe.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def arm_rig():
    rigs = []

    def make(**params):
        rigs.append(ArmRig(**params))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def t_of(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec / NS


class LockstepDriver:
    """Answers every new joint_states with one command, as a controller in lock step would."""

    def __init__(self, rig: ArmRig, publish):
        self.rig, self.publish, self.answered = rig, publish, 0

    def __call__(self) -> None:
        if len(self.rig.got["joints"]) > self.answered:
            self.answered = len(self.rig.got["joints"])
            self.publish()


@needs_ros
def test_arm_node_publishes_sensors_on_sim_time_and_commands_move_it(arm_rig):
    r = arm_rig()
    pub = r.probe.create_publisher(Float64MultiArray, "command", 10)
    drive = LockstepDriver(r, lambda: pub.publish(Float64MultiArray(data=[1.5, 0.0, 0.0])))
    assert r.spin_until(lambda: len(r.got["joints"]) >= 8 and r.got["image"] and r.got["goal"]
                        and r.got["goal_image"], every=drive)

    task = r.sim.core.env.sample_task(1)   # its start has room to turn
    goal = r.got["goal"][-1]
    assert list(goal.name) == list(JOINT_NAMES)
    np.testing.assert_allclose(goal.position, task.goal)
    goal_image = r.got["goal_image"][-1]
    assert (goal_image.width, goal_image.height) == (96, 72)
    goal_pixels = np.frombuffer(bytes(goal_image.data), np.uint8).reshape(72, 96, 3)
    np.testing.assert_array_equal(goal_pixels, r.sim.core.env.render_at(task.goal))

    image = r.got["image"][-1]
    assert (image.width, image.height, image.encoding, image.step) == (96, 72, "rgb8", 96 * 3)
    joints = r.got["joints"]
    assert all(list(j.name) == list(JOINT_NAMES) and len(j.velocity) == 3 for j in joints)
    # Lock step on sim time: one 0.1 s physics step per command, each stamped before its /clock.
    stamps = [t_of(j) for j in joints]
    np.testing.assert_allclose(np.diff(stamps), 0.1, atol=1e-9)
    clock = [c.clock.sec + c.clock.nanosec / NS for c in r.got["clock"]]
    assert stamps[-1] <= clock[-1] + 1e-9
    np.testing.assert_allclose(joints[0].position, task.start)

    q, v = np.asarray(joints[-1].position), np.asarray(joints[-1].velocity)
    assert q[0] > task.start[0] + 0.3 and v[0] > 1.0     # joint 1 turns, at the physics' speed

    # A JointTrajectory drives it too: the first point's velocities, in name order.
    traj = r.probe.create_publisher(JointTrajectory, "joint_trajectory", 10)
    message = JointTrajectory(joint_names=["joint3", "joint2", "joint1"], points=[
        JointTrajectoryPoint(velocities=[0.0, -2.0, 0.0]),      # joint2 at -2 rad/s
        JointTrajectoryPoint(velocities=[9.0] * 3)])            # later points: not applied
    before = len(joints)
    drive.publish = lambda: traj.publish(message)
    assert r.spin_until(lambda: len(r.got["joints"]) >= before + 8, every=drive)
    late = r.got["joints"][-1]
    assert late.velocity[1] < -1.0 and abs(late.velocity[0]) < 0.5
    assert r.sim.rejected_commands == 0


@needs_ros
def test_arm_node_explores_by_itself_for_recording(arm_rig):
    r = arm_rig(explore=True, seed=2)
    assert r.spin_until(lambda: len(r.got["joints"]) >= 30 and len(r.got["command"]) >= 29)
    commands = np.asarray([c.data for c in r.got["command"]])
    assert commands.shape[1] == 3 and (np.abs(commands) <= ACTION_HIGH + 1e-12).all()
    positions = np.asarray([j.position for j in r.got["joints"]])
    assert np.abs(positions[-1] - positions[0]).max() > 0.2   # nobody else drove it
    assert r.got["episode"] and r.got["episode"][0]["env"] == "arm"
    assert r.sim.explorer.rest_probability == 0.0              # rests are off unless asked for


@needs_ros
def test_arm_node_explores_with_rests_when_asked(arm_rig):
    r = arm_rig(explore=True, seed=2, explore_rest_probability=0.5)
    assert r.sim.explorer.rest_probability == 0.5
    assert r.spin_until(lambda: len(r.got["command"]) >= 40)
    commands = np.asarray([c.data for c in r.got["command"]])
    assert (commands == 0).all(axis=1).mean() > 0.5           # mostly resting at p = 0.5


def test_the_arm_parameter_file_gives_the_arms_own_joint_limits():
    """config/arm_controller.yaml's cost.joint_limits_low/high (a goal beyond them is refused)
    are arm.xml's joint ranges and velocity servo bounds, in the model's value order."""
    import yaml
    from pathlib import Path
    values = yaml.safe_load((Path(__file__).parents[1] / "config" / "arm_controller.yaml").read_text())
    values = values["/**"]["ros__parameters"]
    low, high = (np.array(values[f"cost.joint_limits_{k}"]).reshape(3, 2) for k in ("low", "high"))
    np.testing.assert_array_equal(low[:, 0], JOINT_LOW)          # joint1.position, joint1.velocity, ...
    np.testing.assert_array_equal(high[:, 0], JOINT_HIGH)
    np.testing.assert_array_equal(low[:, 1], ACTION_LOW)
    np.testing.assert_array_equal(high[:, 1], ACTION_HIGH)
    assert values.get("cost.joint_limit_weight", 0.0) == 0.0     # refusing goals only: no barrier
