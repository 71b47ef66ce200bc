"""Robot-scale rosbag2 data: several bags (sqlite3, mcap), episodes cut at pauses, resets and the
sim's episode reports or to a fixed length, joint velocities, Twist fields, split-independent
training windows, ``collect``'s errors, and ``grasp-ros record`` over real DDS read back by the
importer."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from grasp_ros.cli import main as cli
from grasp_ros.data import DatasetError, TransitionData, TransitionWindows, collect_episodes, load_dataset
from grasp_ros.mcap_checksums import check_checksums, mcap_files
from grasp_ros.models.card import card_from_data
from grasp_ros.sim import make_env

from bag_edits import edit_messages

rosbag = pytest.importorskip("grasp_ros.data.rosbag")
pytest.importorskip("rosbags")
from bag_fixtures import write_rosbag  # noqa: E402


def read(paths, **options):
    return rosbag.read_rosbag(paths, image_size=16, progress=False, **options)

EPISODES, STEPS = 3, 10


@pytest.fixture(scope="module")
def recording():
    """Three sim episodes played back to back as one recording: frames [F, 16, 16, 3], joints
    [F, 2], commands [F-1, 2] (the command across an episode boundary is arbitrary), and the
    first frame of every episode after the first."""
    env = make_env("open", 50, image_size=16)
    data = collect_episodes(env, episodes=EPISODES, steps=STEPS, seed=5)
    commands = np.concatenate([np.vstack([a, [[0.3, 0.3]]]) for a in data.actions])[:-1]
    starts = [e * (STEPS + 1) for e in range(1, EPISODES)]
    jumps = [np.abs(data.joints[e, 0] - data.joints[e - 1, -1]).max() for e in range(1, EPISODES)]
    assert min(jumps) > 3 * env.max_step, "the fixture needs resets that a threshold can see"
    return (data, data.images.reshape(-1, 16, 16, 3), data.joints.reshape(-1, 2), commands, starts,
            env.max_step)


def same_episodes(back: TransitionData, data: TransitionData) -> None:
    assert (back.episodes, back.steps) == (data.episodes, data.steps)
    assert np.array_equal(back.images, data.images)
    assert np.allclose(back.joints, data.joints) and np.allclose(back.actions, data.actions)


# --- several bags, both storages -----------------------------------------------------------

def test_reads_several_bags_and_folders_of_both_storages(recording, tmp_path):
    data, frames, joints, commands, _, _ = recording
    folder = tmp_path / "runs"
    (folder / "day1").mkdir(parents=True)
    # the first two as `ros2 bag record --compression-mode file` and `message` write them (zstd)
    for e, (storage, compression) in enumerate((("sqlite3", "file"), ("mcap", "message"), ("mcap", ""))):
        write_rosbag(folder / "day1" / f"bag{e}", data.images[e], data.joints[e], data.actions[e],
                     storage=storage, compression=compression)
    (folder / ".day2.recording-1" / "day2").mkdir(parents=True)     # a recording cut off: hidden, unread
    (folder / ".day2.recording-1" / "day2" / "day2.mcap").write_bytes(b"\x89MCAP0\r\n")
    back = read([folder])         # a folder of bags, one episode each
    same_episodes(back, data)
    bags = back.meta["bags"]
    assert [b["storage"] for b in bags] == ["sqlite3", "mcap", "mcap"]
    assert [b["messages"]["/image"] for b in bags] == [STEPS + 1] * 3
    assert [b["episodes"] for b in bags] == [1, 1, 1] and back.meta["frames_dropped"] == 0
    # named one by one (a bare .mcap storage file too), a bag named twice is read once
    bare = folder / "day1" / "bag2" / "bag2.mcap"
    again = read([folder / "day1" / "bag0", folder / "day1" / "bag1", bare, folder / "day1" / "bag0"])
    same_episodes(again, data)
    write_rosbag(folder / "short", data.images[0][:4], data.joints[0][:4], data.actions[0][:3])
    fives = read([folder / "short", folder / "day1"], episode_steps=5)    # the first bag gives none
    assert fives.episodes == 2 * EPISODES and [b["episodes"] for b in fives.meta["bags"]] == [0, 2, 2, 2]
    assert np.array_equal(fives.images[0], data.images[0, :6])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no rosbag2"):
        read([tmp_path / "empty"])


def test_read_rosbag_refuses_missing_topics_empty_bags_and_bad_options(recording, tmp_path):
    data = recording[0]
    bag = tmp_path / "bag"
    write_rosbag(bag, data.images[0], data.joints[0], data.actions[0])
    with pytest.raises(DatasetError, match=r"no topic \['/cmd_vel'\]"):
        read(bag, command_topic="cmd_vel")
    with pytest.raises(DatasetError, match="/joint_states is sensor_msgs/msg/JointState; expected"):
        read(bag, command_topic="joint_states")
    write_rosbag(tmp_path / "empty", data.images[0][:0], data.joints[0][:0], data.actions[0][:0])
    with pytest.raises(DatasetError, match="no messages on"):
        read(tmp_path / "empty")
    for bad in ({"joint_fields": ("position", "speed")}, {"twist_fields": ("linear.w",)},
                {"episode_steps": 0}, {"gap": -1.0}, {"reset_jump": 0.1, "joint_fields": ("velocity",)}):
        with pytest.raises(ValueError):
            read(bag, **bad)


# --- episodes: pauses, resets, episode reports, fixed length -------------------------------

def test_cuts_at_pauses_resets_and_episode_reports_give_back_the_episodes(recording, tmp_path):
    data, frames, joints, commands, starts, max_step = recording
    times = 1_700_000_000 + np.arange(len(frames)) * 0.1
    paused = times + 5.0 * (np.arange(len(frames))[:, None] >= np.array(starts)).sum(1)
    cases = {"pauses": ({"times_s": paused}, {}, "gap"),
             "resets": ({}, {"reset_jump": 3 * max_step}, "reset"),
             "reports": ({"episode_marks": starts}, {}, "episode_topic")}
    for name, (write_options, read_options, cause) in cases.items():
        bag = tmp_path / name
        write_rosbag(bag, frames, joints, commands, **write_options)
        back = read(bag, **read_options)
        same_episodes(back, data)
        assert back.meta["cuts"][cause] == EPISODES - 1, name
        assert back.meta["frames_used"] == len(frames) and back.meta["frames_dropped"] == 0
    # without a cut, one piece: the reset transitions are learned from
    assert read(tmp_path / "resets").episodes == 1


def test_fixed_length_episodes_share_frames_and_count_what_is_dropped(recording, tmp_path):
    data, frames, joints, commands, starts, max_step = recording
    bag = tmp_path / "bag"
    write_rosbag(bag, frames, joints, commands, episode_marks=starts)
    halves = read(bag, episode_steps=5)
    assert (halves.episodes, halves.steps) == (2 * EPISODES, 5)
    assert np.array_equal(halves.images[1], data.images[0, 5:])          # frame 5 ends one, starts the next
    assert np.allclose(halves.actions.reshape(EPISODES, 10, 2), data.actions)
    fours = read(bag, episode_steps=4)
    assert fours.episodes == 2 * EPISODES and fours.meta["frames_dropped"] == 2 * EPISODES
    assert fours.meta["split"]["episode_steps"] == 4
    with pytest.raises(DatasetError, match="too few frames: no episode of 11 steps; the longest stretch"):
        read(bag, episode_steps=11)
    # pieces of unequal length without episode_steps
    write_rosbag(tmp_path / "uneven", frames[:-2], joints[:-2], commands[:-2], episode_marks=starts)
    with pytest.raises(DatasetError, match="different lengths.*pass episode_steps"):
        read(tmp_path / "uneven")


# --- joint fields and Twist fields ---------------------------------------------------------

def test_joint_velocities_are_kept_name_major(recording, tmp_path):
    data = recording[0]
    velocity = 10 + np.arange(data.joints[0].size, dtype=float).reshape(data.joints[0].shape)
    bag = tmp_path / "bag"
    write_rosbag(bag, data.images[0], data.joints[0], data.actions[0], velocities=velocity)
    back = read(bag, joint_fields=("position", "velocity"))
    assert back.joint_dim == 4
    assert np.allclose(back.joints[0, :, 0::2], data.joints[0]) and np.allclose(back.joints[0, :, 1::2], velocity)
    assert back.meta["joint_fields"] == ["position", "velocity"] and back.meta["joint_names"] == ["x", "y"]
    assert back.meta["joint_columns"] == ["x.position", "x.velocity", "y.position", "y.velocity"]
    picked = read(bag, joint_fields=("velocity",), joint_names=["y"])
    assert np.allclose(picked.joints[0, :, 0], velocity[:, 1])
    velocity[5, 1] = np.nan                      # a driver's NaN: frame 5 is left out, not the bag
    write_rosbag(tmp_path / "nan", data.images[0], data.joints[0], data.actions[0], velocities=velocity)
    around = read(tmp_path / "nan", joint_fields=("position", "velocity"), episode_steps=3)
    assert around.episodes == 2 and around.meta["cuts"]["non_finite"] == 2
    assert np.array_equal(around.images[1], data.images[0, 6:10])
    write_rosbag(tmp_path / "positions", data.images[0], data.joints[0], data.actions[0])
    with pytest.raises(DatasetError, match=r"carries no velocities for 2 wanted joint\(s\), "
                                           r"and the joint fields are \['position', 'velocity'\]"):
        read(tmp_path / "positions", joint_fields=("position", "velocity"))


def test_twist_fields_are_named_and_auto_keeps_the_planar_ones_that_move(recording, tmp_path):
    data = recording[0]
    bag = tmp_path / "diff_drive"
    write_rosbag(bag, data.images[0], data.joints[0], data.actions[0], twist_fields=("linear.x", "angular.z"))
    auto = read(bag)
    assert auto.meta["action_names"] == ["linear.x", "angular.z"] and auto.meta["action_kind"] == "twist"
    assert np.allclose(auto.actions[0], data.actions[0]) and auto.meta["unused_nonzero_command_fields"] == []
    only_x = read(bag, twist_fields=("linear.x",))
    assert np.allclose(only_x.actions[0, :, 0], data.actions[0, :, 0])
    assert only_x.meta["unused_nonzero_command_fields"] == ["angular.z"]
    planar = read(bag, twist_fields=("linear.x", "linear.y", "angular.z"))
    assert np.all(planar.actions[0, :, 1] == 0) and np.allclose(planar.actions[0, :, 2], data.actions[0, :, 1])
    write_rosbag(tmp_path / "still", data.images[0], data.joints[0], 0 * data.actions[0],
                 twist_fields=("linear.x", "angular.z"))
    with pytest.raises(DatasetError, match="zero throughout"):
        read(tmp_path / "still")


def test_a_camera_faster_than_the_control_rate_is_read_one_frame_per_period(tmp_path):
    """A 30 Hz camera on a robot controlled at 10 Hz: frame_period 0.1 keeps every third frame
    (on the camera's own stamps) and its joint state; a step's action is the command held over
    its 0.1 s (its time average with align "mean", the last one with "end"); the dataset's (and
    the model's) period is 0.1 s. A period shorter than the camera's, or not a whole number of
    its periods, is refused."""
    rng = np.random.default_rng(4)
    n = 31
    images = rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)
    joints = np.cumsum(rng.normal(0, 0.01, (n, 2)), axis=0)
    commands = rng.uniform(-1, 1, (n - 1, 2))
    bag = tmp_path / "camera_30hz"
    write_rosbag(bag, images, joints, commands, period_s=1 / 30, image_delay_s=0.004)
    end = read(bag, frame_period=0.1, episode_topic=None)
    assert end.meta["period"] == pytest.approx(0.1) and end.meta["frame_period_s"] == pytest.approx(0.1)
    assert end.meta["action_units"].startswith("as recorded")    # a MultiArray's: not "normalised"
    assert np.array_equal(end.images[0], images[::3]) and np.allclose(end.joints[0], joints[::3])
    # command i is sent half-way from frame i to i+1: the one held at frame 3(k+1) is 3k+2
    assert np.allclose(end.actions[0], commands[2::3])
    mean = read(bag, frame_period=0.1, align="mean", episode_topic=None)   # from frame 3: after command 0
    assert np.array_equal(mean.images[0], images[3::3])
    for k, j in enumerate(range(3, n - 3, 3)):
        # over frames [j, j+3): commands j-1 and j+2 for half a frame each, j and j+1 for a whole
        held = (0.5 * commands[j - 1] + commands[j] + commands[j + 1] + 0.5 * commands[j + 2]) / 3
        assert np.allclose(mean.actions[0, k], held, atol=1e-4)     # (stamps in whole ns, float32)
    with pytest.raises(DatasetError, match=r"frame_period 0.01 s is shorter than the camera's "
                                           r"frame period, 0.03333 s"):
        read(bag, frame_period=0.01)
    with pytest.raises(DatasetError, match=r"frame_period 0.05 s is 1.50 of the camera's frame "
                                           r"periods \(0.03333 s\): steps would be uneven; choose a "
                                           r"whole number of them, e.g. 0.03333 or 0.06667 s"):
        read(bag, frame_period=0.05)        # every other step 1 frame, then 2


def test_a_camera_whose_stamps_fall_on_a_physics_clock_has_its_true_period(tmp_path):
    """A 30 Hz camera in a sim stepping at 200 Hz: its stamps are 30 and 35 ms apart in turn
    (median 35 ms). Its period is 1/30 s, and 0.1 s is three of its frames: every kept step is
    0.1 s (0.105 s would alternate 0.1 and 0.135)."""
    rng = np.random.default_rng(5)
    n = 31
    images = rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)
    joints = np.cumsum(rng.normal(0, 0.01, (n, 2)), axis=0)
    commands = rng.uniform(-1, 1, (n - 1, 2))
    times = 1000.0 + np.round(np.arange(n) / 30 / 0.005) * 0.005
    assert set(np.round(np.diff(times), 3)) == {0.03, 0.035}
    bag = tmp_path / "camera_on_physics"
    write_rosbag(bag, images, joints, commands, times_s=times)
    every = read(bag, episode_topic=None)
    assert every.meta["period"] == pytest.approx(1 / 30, rel=0.01)
    tenth = read(bag, frame_period=0.1, episode_topic=None)
    assert tenth.meta["period"] == pytest.approx(0.1) and np.array_equal(tenth.images[0], images[::3])
    with pytest.raises(DatasetError, match=r"0.105 s is 3.15 of the camera's frame periods"):
        read(bag, frame_period=0.105)


def test_joint_trajectory_commands_give_their_velocities_named_by_joint(recording, tmp_path):
    """A robot driven by JointTrajectory (by velocity, as the controller's joint_trajectory output
    and the arm sim take it): the actions are the first point's velocities, in the first command's
    joint order whatever order later ones list them in; the card then names joints, in velocity
    units. A trajectory without velocities, or one that lacks a joint, is refused by name."""
    data = recording[0]
    bag = tmp_path / "trajectory"
    write_rosbag(bag, data.images[0], data.joints[0], data.actions[0], trajectory_joints=("shoulder", "elbow"))
    back = read(bag)
    assert back.meta["action_names"] == ["shoulder", "elbow"] and back.meta["action_kind"] == "velocity"
    assert back.meta["action_units"] == "joint velocities (rad/s, m/s)"
    assert np.array_equal(back.actions[0], data.actions[0].astype(back.actions.dtype))
    card = card_from_data(back.meta, image_size=16, joint_dim=2, action_dim=2, metrics={})
    assert card.actions.names == ("shoulder", "elbow") and card.actions.kind == "velocity"
    with pytest.raises(DatasetError, match="commands are trajectory_msgs/msg/JointTrajectory"):
        array_bag = tmp_path / "array"
        write_rosbag(array_bag, data.images[0], data.joints[0], data.actions[0])
        read([array_bag, bag])
    def no_velocities(m, types):
        m.points[0].velocities = np.zeros(0)
        return [m]

    def first_joint_only(m, types):        # the first command's, then the other's (reversed)
        m.joint_names, m.points[0].velocities = m.joint_names[:1], m.points[0].velocities[:1]
        return [m]
    edit_messages(bag, tmp_path / "no_velocities", "/command", no_velocities)
    with pytest.raises(DatasetError, match="without velocities in its first point"):
        read(tmp_path / "no_velocities")
    edit_messages(bag, tmp_path / "one_joint", "/command", first_joint_only)
    with pytest.raises(DatasetError, match=r"command message 2: JointTrajectory lacks joint\(s\) \['shoulder'\]"):
        read(tmp_path / "one_joint")


def test_action_names_take_a_trajectorys_joints_by_name(recording, tmp_path):
    """A trajectory names its joints: --action-names picks them by name, in its order, and never
    renames the recorded velocities by place (that would train the model to send one joint's
    velocity to another)."""
    data = recording[0]
    bag = tmp_path / "trajectory"
    write_rosbag(bag, data.images[0], data.joints[0], data.actions[0], trajectory_joints=("shoulder", "elbow"))
    out = tmp_path / "swapped.npz"
    assert cli(["collect", "--rosbag", str(bag), "--image-size", "16", "--episode-steps", "0",
                "--action-names", "elbow,shoulder", "--out", str(out), "--quiet"]) == 0
    swapped = load_dataset(out)
    assert swapped.meta["action_names"] == ["elbow", "shoulder"]
    assert np.array_equal(swapped.actions[0], data.actions[0][:, ::-1].astype(swapped.actions.dtype))
    assert cli(["collect", "--rosbag", str(bag), "--image-size", "16", "--episode-steps", "0",
                "--action-names", "wrist,shoulder", "--out", str(tmp_path / "x.npz"), "--quiet"]) == 2


# --- training windows ----------------------------------------------------------------------

def test_window_count_follows_the_transitions_not_the_split():
    transitions, k, stride = 960, 8, 5

    def split(T):
        N = transitions // T
        return TransitionData(np.zeros((N, T + 1, 4, 4, 3), np.uint8), np.zeros((N, T + 1, 2)),
                              np.zeros((N, T, 2)), {})

    counts = {T: len(TransitionWindows(split(T), k, stride=stride)) for T in (8, 24, 32, 96, 960)}
    assert set(counts.values()) == {math.ceil(transitions / stride)}, counts
    every = {T: len(TransitionWindows(split(T), k)) for T in (8, 32, 960)}   # evaluation: every window
    assert every == {8: 120, 32: 30 * 25, 960: 953}
    windows = TransitionWindows(split(32), k, stride=stride)
    episode, frames = windows.frame_index(torch.arange(len(windows)))
    assert set(episode[:, 0].tolist()) == set(range(30)) and frames.max() <= 32
    starts = frames[episode[:, 0] == 0, 0].tolist()
    assert starts[0] == 0 and starts[-1] == 32 - k     # spread over the episode, ends included
    with pytest.raises(ValueError, match="stride"):
        TransitionWindows(split(32), k, stride=0)


# --- grasp-ros collect ---------------------------------------------------------------------

def test_collect_reads_several_bags_and_refuses_bad_ones_with_status_2(recording, tmp_path, capsys):
    data, frames, joints, commands, starts, _ = recording
    write_rosbag(tmp_path / "a", frames, joints, commands, episode_marks=starts, storage="mcap", velocities=-joints)
    write_rosbag(tmp_path / "b", data.images[0], data.joints[0], data.actions[0], velocities=data.joints[0])
    out = tmp_path / "robot.npz"
    assert cli(["collect", "--rosbag", str(tmp_path / "a"), str(tmp_path / "b"), "--episode-steps", "5",
                "--joint-fields", "position,velocity", "--image-size", "16", "--out", str(out), "--quiet"]) == 0
    saved = load_dataset(out)
    assert (saved.episodes, saved.steps, saved.joint_dim) == (2 * EPISODES + 2, 5, 4)
    assert [b["episodes"] for b in saved.meta["bags"]] == [2 * EPISODES, 2]
    assert "frames used" in capsys.readouterr().out
    write_rosbag(tmp_path / "empty", frames[:0], joints[:0], commands[:0])
    (tmp_path / "nothing").mkdir()
    for args, message in (
            (["--rosbag", str(tmp_path / "b"), "--command-topic", "/cmd_vel"], "no topic ['/cmd_vel']"),
            (["--rosbag", str(tmp_path / "empty")], "no messages on"),
            (["--rosbag", str(tmp_path / "b")], "too few frames: no episode of 32 steps"),
            (["--rosbag", str(tmp_path / "nothing")], "holds no rosbag2"),
            (["--rosbag", str(tmp_path / "b"), "--twist-fields", "linear.q"], "twist fields"),
            (["--rosbag", str(tmp_path / "b"), "--frame-period", "0"], "--frame-period must be > 0"),
            (["--rosbag", str(tmp_path / "b"), "--frame-period", "0.01"], "shorter than the camera's")):
        assert cli(["collect", *args, "--out", str(tmp_path / "x.npz"), "--quiet"]) == 2, args
        assert message in capsys.readouterr().err, args
    assert not (tmp_path / "x.npz").exists()


# --- grasp-ros record over real DDS --------------------------------------------------------

def _record_command(out, *args):
    return [sys.executable, "-m", "grasp_ros.cli", "record", str(out), *args]


def _wait(predicate, process, timeout=60.0, lines=None):
    """Poll until predicate() (a graph condition, not a time budget); fail with the recorder's
    output (``lines`` where a thread reads it) if the recorder died or nothing happened at all."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = "".join(lines) if lines is not None else process.communicate()[0]
            pytest.fail(f"recorder not ready (status {process.poll()}):\n{output}")
        time.sleep(0.05)


def test_record_the_sim_and_read_the_bag_back(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context
    from rclpy.duration import Duration
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from grasp_ros.sim.node import SimNode

    out = tmp_path / "sim_bag"
    recorder = subprocess.Popen(_record_command(out, "--topics", "image", "joint_states", "command",
                                                "/grasp_sim/episode"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(recorder.stdout), daemon=True)
    reader.start()
    context = Context()
    rclpy.init(context=context)
    params = {"env": "open", "seed": 2, "lockstep": True, "wait_for_controller": False,
              "max_episode_time": 1.0}
    sim = SimNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    probe = rclpy.create_node("record_probe", context=context)
    command = probe.create_publisher(Float64MultiArray, "command", 10)
    steps, states = 45, [0]      # 4.5 episodes of 10 steps

    def step(_):
        # Lockstep: one physics step per command, each sent when the step's joint state arrives;
        # after the last, the sim stands still.
        states[0] += 1
        if states[0] <= steps:
            command.publish(Float64MultiArray(data=[0.5, -0.25]))
    probe.create_subscription(JointState, "joint_states", step, 10)
    executor = SingleThreadedExecutor(context=context)
    try:
        _wait(lambda: min(sim.image_pub.get_subscription_count(), sim.joints_pub.get_subscription_count(),
                          sim.episode_pub.get_subscription_count()) >= 1
              and command.get_subscription_count() >= 2, recorder, lines=lines)
        # The latched reports reach a new subscriber after a DDS heartbeat, which can come after a
        # lock-step run is over: the run starts once the first report (sim time 0,
        # published on construction) is in the bag.
        _wait(lambda: "/grasp_sim/episode: first message\n" in lines, recorder, lines=lines)
        executor.add_node(sim)
        executor.add_node(probe)
        deadline = time.monotonic() + 120
        while states[0] <= steps and recorder.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)
        # The recorder stops once every reliable message is in its queue. A cap on the count (it
        # was --messages 150) stopped it mid-stream with each topic's queue taken to another
        # point on a busy machine: frames of an episode whose report it had not yet taken, read
        # as one episode with the sim's reset inside (a jump of 0.87 m in a clean-clone run).
        for publisher in (sim.joints_pub, sim.episode_pub, command):
            assert publisher.wait_for_all_acked(Duration(seconds=30)), "".join(lines)
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
        reader.join(timeout=30)
        output = "".join(lines)
    finally:
        recorder.kill()
        executor.shutdown()
        sim.destroy_node()
        probe.destroy_node()
        rclpy.shutdown(context=context)
    assert recorder.returncode == 0, output
    assert f"wrote {out}" in output
    assert [p.name for p in tmp_path.iterdir()] == ["sim_bag"]       # no scratch folder left
    # Frames pair with joint states by header stamp and the sim's episode reports cut at their
    # own sim time, however late a busy machine delivered either.
    back = read(out, joint_fields=("position", "velocity"), episode_steps=3)
    assert back.meta["bags"][0]["joint_pairing"] == "header stamps"
    assert back.meta["bags"][0]["storage"] == "mcap" and back.meta["cuts"]["episode_topic"] >= 1
    assert back.episodes >= 2 and back.joint_dim == 4
    # In lock step the receive times are the wall's; the model's step is the camera's own (sim) period.
    assert back.meta["period"] == pytest.approx(0.1)
    assert np.allclose(back.actions, [0.5, -0.25])
    positions, velocities = back.joints[..., 0::2], back.joints[..., 1::2]
    step = make_env("open", 50).max_step
    assert np.abs(np.diff(positions, axis=1)).max() <= 3 * step + 1e-6   # no reset inside an episode
    assert np.abs(velocities).max() > 0
    # The recorder wrote MCAP's CRCs (the rosbags writer leaves them at 0): a bit changed in a
    # frame is refused by the importer instead of training on it.
    data = mcap_files(out)[0]
    assert check_checksums(data) == 2
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    damaged = tmp_path / "damaged.mcap"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"damaged.mcap: damaged: the data section .* fails its CRC-32"):
        read(damaged, joint_fields=("position", "velocity"), episode_steps=3)


def test_record_stops_on_sigint_and_leaves_a_whole_bag(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from grasp_ros.data.rosbag import find_bags

    try:   # this package's own message: its definition comes from the installed .msg
        from grasp_ros.msg import JointGoal
    except ImportError as exc:
        pytest.skip(f"grasp_ros.msg is not built: {exc}")
    from grasp_ros.ros import qos

    out = tmp_path / "chat"
    recorder = subprocess.Popen(_record_command(out, "--topics", "chatter:std_msgs/String", "goal", "--storage",
                                                "sqlite3"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("record_talker", context=context)
    talker = node.create_publisher(String, "chatter", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    goal = node.create_publisher(JointGoal, "goal", qos.GOAL)
    goal.publish(JointGoal(name=["x", "y"], position=[0.5, -0.5]))   # latched: recorded though sent first
    try:
        _wait(lambda: talker.get_subscription_count() >= 1 and goal.get_subscription_count() >= 1, recorder)
        for i in range(40):
            talker.publish(String(data=f"hello {i}"))
        assert talker.wait_for_all_acked(Duration(seconds=30))     # all 40 are in the recorder's queue
        assert goal.wait_for_all_acked(Duration(seconds=30))
        recorder.send_signal(signal.SIGINT)
        output = recorder.communicate(timeout=60)[0]
    finally:
        recorder.kill()
        node.destroy_node()
        rclpy.shutdown(context=context)
    assert recorder.returncode == 0, output
    assert find_bags([tmp_path]) == [out] and sorted(os.listdir(tmp_path)) == ["chat"]
    from rosbags.highlevel import AnyReader

    with AnyReader([out]) as reader:
        got = {}
        for c, _, raw in reader.messages():
            got.setdefault(c.topic, []).append(reader.deserialize(raw, c.msgtype))
    assert [m.data for m in got["/chatter"]] == [f"hello {i}" for i in range(40)]
    assert [(list(m.name), list(m.position)) for m in got["/goal"]] == [(["x", "y"], [0.5, -0.5])]
    assert cli(["record", str(out)]) == 2                                # never overwrites a bag


def test_topics_of_known_type_are_recorded_from_their_first_message(tmp_path):
    """A topic named with its type, or a default one, is subscribed before any publisher exists:
    no graph poll (``discover``) is needed for its first messages. A default topic whose publisher
    sends another type, or a QoS the early subscription does not match, is subscribed again once
    the poll sees it."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Writer
    from std_msgs.msg import Float32MultiArray, String

    from grasp_ros.ros.recorder import BagRecorder

    # Two contexts (two DDS participants, as two processes): one participant cannot hold a topic
    # under two types.
    contexts = [Context(), Context()]
    for context in contexts:
        rclpy.init(context=context)
    node = rclpy.create_node("record_early", context=contexts[0])
    talker_node = rclpy.create_node("record_talker", context=contexts[1])
    executors = [SingleThreadedExecutor(context=c) for c in contexts]
    executors[0].add_node(node)
    executors[1].add_node(talker_node)
    best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

    def spin_until(predicate):
        deadline = time.monotonic() + 60
        while not predicate():
            assert time.monotonic() < deadline, "no DDS match within 60 s"
            for executor in executors:
                executor.spin_once(timeout_sec=0.02)
    try:
        with Writer(tmp_path / "bag", version=9) as writer:
            said, clock = [], [0.0]
            recorder = BagRecorder(node, writer, [("chatter", "std_msgs/msg/String"), ("command", None),
                                                  ("joint_states", None), ("/nobody/speaks", None)],
                                   log=said.append, now=lambda: clock[0])
            clock[0] = 10.5                   # no publisher yet on any: said once, by name
            recorder.discover()
            quiet = [line for line in said if line.startswith("no publisher seen yet")]
            assert len(quiet) == 1 and "/nobody/speaks" in quiet[0] and "/chatter" in quiet[0]
            recorder.discover()
            assert len([line for line in said if line.startswith("no publisher seen yet")]) == 1
            chatter = talker_node.create_publisher(String, "chatter", reliable)
            command = talker_node.create_publisher(Float32MultiArray, "command", reliable)   # not the default type
            joints = talker_node.create_publisher(String, "joint_states", best_effort)         # nor QoS, nor type
            spin_until(lambda: chatter.get_subscription_count() >= 1)     # no discover() has run
            for i in range(5):
                chatter.publish(String(data=f"hello {i}"))
            spin_until(lambda: recorder.recorded["/chatter"].count == 5)
            assert command.get_subscription_count() == 0 and joints.get_subscription_count() == 0
            recorder.discover()                                           # the poll: both subscribed again
            assert recorder.recorded["/command"].msgtype == "std_msgs/msg/Float32MultiArray"
            assert recorder.recorded["/joint_states"].msgtype == "std_msgs/msg/String"
            spin_until(lambda: command.get_subscription_count() >= 1 and joints.get_subscription_count() >= 1)
            command.publish(Float32MultiArray(data=[0.5]))
            spin_until(lambda: recorder.recorded["/command"].count == 1)
    finally:
        for executor in executors:
            executor.shutdown()
        node.destroy_node()
        talker_node.destroy_node()
        for context in contexts:
            rclpy.shutdown(context=context)
    with AnyReader([tmp_path / "bag"]) as reader:
        got = {}
        for c, _, raw in reader.messages():
            got.setdefault(c.topic, []).append(reader.deserialize(raw, c.msgtype))
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    assert [m.data for m in got["/chatter"]] == [f"hello {i}" for i in range(5)]
    assert [list(m.data) for m in got["/command"]] == [[0.5]]
    assert len(qos["/chatter"]) == 1            # the publisher's QoS, taken at the first message


def test_a_continuous_joint_is_cut_where_it_wraps_and_named_in_the_card(tmp_path, capsys):
    """A base turning at a steady rate: its yaw wraps from +pi to -pi. Declared continuous, the
    wrap steps are cut (not learned as 2 pi jumps) and the card names the joint; undeclared,
    collect says it looks like an angle that wraps."""
    from grasp_ros.cli import main as cli
    from grasp_ros.models.card import card_from_data
    n = 40
    yaw = np.angle(np.exp(1j * (2.6 + 0.1 * np.arange(n))))            # wraps once, at step 5-6
    joints = np.stack([0.01 * np.arange(n), yaw], axis=1)
    frames = np.zeros((n, 16, 16, 3), np.uint8)
    frames[:, :, :, 0] = (np.arange(n) * 5 % 255)[:, None, None]
    write_rosbag(tmp_path / "turning", frames, joints, np.full((n - 1, 2), 0.1), joint_names=("x", "yaw"))
    declared = read(tmp_path / "turning", continuous_joints=("yaw",), episode_steps=4)
    assert declared.meta["cuts"]["wrap"] == 1 and declared.meta["continuous_joints"] == ["yaw"]
    assert np.abs(np.diff(declared.joints[..., 1], axis=1)).max() < 0.2
    card = card_from_data(declared.meta, 16, 2, 2, {})
    assert card.joints.continuous == ("yaw",) and "continuous (angles that wrap): ['yaw']" in card.describe()
    with pytest.raises(ValueError, match="continuous joints \\['heading'\\] are not among"):
        read(tmp_path / "turning", continuous_joints=("heading",))
    assert cli(["collect", "--rosbag", str(tmp_path / "turning"), "--out", str(tmp_path / "d.npz"),
                "--image-size", "16", "--episode-steps", "10", "--quiet"]) == 0
    warned = capsys.readouterr().err
    assert "joint yaw jumps by more than pi in 1 step(s)" in warned and "--continuous-joints yaw" in warned
    assert cli(["collect", "--rosbag", str(tmp_path / "turning"), "--out", str(tmp_path / "e.npz"),
                "--image-size", "16", "--episode-steps", "10", "--quiet", "--continuous-joints", "yaw"]) == 0
    assert "jumps by more than pi" not in capsys.readouterr().err


def test_reset_limits_by_joint_cut_only_the_resets_where_units_differ(tmp_path, capsys):
    """An arm joint in rad beside a gripper in m: one limit small enough for the gripper's
    leaps cuts the arm at every step (an outside audit: 98% of its bag left out, without a
    word). Collect suggests a limit per joint, those cut only the resets, and a bag mostly left
    out is said to be."""
    from grasp_ros.cli import main as cli
    n = 400
    steps = np.stack([np.full(n, 0.05), np.full(n, 0.0005)], axis=1) * np.where(np.arange(n) % 40 < 20, 1, -1)[:, None]
    steps[50:80, 0] /= 50                                          # the arm slow for a while
    steps[[100, 200, 300]] += (2.0, 0.02)                          # teleported: resets
    joints = np.cumsum(steps, axis=0)
    frames = np.zeros((n, 8, 8, 3), np.uint8)
    write_rosbag(tmp_path / "robot", frames, joints, np.full((n - 1, 2), 0.1))
    out = ["--out", str(tmp_path / "d.npz"), "--image-size", "8", "--episode-steps", "10", "--quiet"]
    assert cli(["collect", "--rosbag", str(tmp_path / "robot"), *out]) == 0
    warned = capsys.readouterr().err
    assert "--reset-jump x=0.25,y=0.0025" in warned, warned
    assert cli(["collect", "--rosbag", str(tmp_path / "robot"), *out, "--reset-jump", "0.0025"]) == 0
    one = capsys.readouterr()
    assert "frames left out" in one.err and "check --reset-jump" in one.err, one.err
    assert cli(["collect", "--rosbag", str(tmp_path / "robot"), *out, "--reset-jump", "x=0.25,y=0.0025"]) == 0
    by_joint = capsys.readouterr()
    assert "'reset': 3" in by_joint.out and "left out" not in by_joint.err, (by_joint.out, by_joint.err)
    assert cli(["collect", "--rosbag", str(tmp_path / "robot"), *out, "--reset-jump", "x=0.25,q=1"]) == 2
    assert "not among the joints" in capsys.readouterr().err


def test_collect_warns_of_unreported_resets_a_cropped_camera_and_stamps_that_jump_back(tmp_path, capsys):
    """What a bag from a robot nobody here wrote can hide: a reset that teleports the robot
    between episodes with nothing in the bag saying so (learned as motion unless cut), a 4:3
    camera that the default centre crop cuts to a square, and a driver whose stamps jump back."""
    from grasp_ros.cli import main as cli
    from grasp_ros.data.rosbag import stamps_back
    n = 400
    x = 0.01 * np.arange(n)
    x[205:] += 3.0                                                  # teleported at step 205
    joints = np.stack([x, np.zeros(n)], axis=1)
    frames = np.zeros((n, 12, 16, 3), np.uint8)                     # 16 x 12: 4:3
    frames[..., 0] = (np.arange(n) * 4 % 255)[:, None, None]
    write_rosbag(tmp_path / "robot", frames, joints, np.full((n - 1, 2), 0.1))
    out = ["--out", str(tmp_path / "d.npz"), "--image-size", "8", "--episode-steps", "10", "--quiet"]
    assert cli(["collect", "--rosbag", str(tmp_path / "robot"), *out]) == 0
    warned = capsys.readouterr().err
    assert "joint x leaps by up to 3.01 in 1 step(s)" in warned and "--reset-jump x=0.05" in warned
    assert "joint y leaps" not in warned
    # y is a passive joint (an outside arm's fingers): every goal would have to give it
    assert "joints y never move in the bags" in warned and "--joint-names x" in warned
    assert "camera frames are 16x12: --crop center keeps the middle 12x12 (25% of the width dropped" in warned
    assert "jump back" not in warned
    assert cli(["collect", "--rosbag", str(tmp_path / "robot"), *out, "--reset-jump", "0.05",
                "--crop", "stretch"]) == 0
    quiet = capsys.readouterr()
    assert "leaps" not in quiet.err and "--crop center" not in quiet.err and "'reset': 1" in quiet.out
    second = 10**9
    assert stamps_back([k * second // 50 for k in range(100)]) == 0
    broken = [k * second // 50 - (second if k % 50 == 7 else 0) for k in range(100)]   # 1 s early
    assert stamps_back(broken) == 2
    split = [k * second // 1000 + (300_000 if k % 2 else 0) for k in range(100)]   # two publishers' jitter
    assert stamps_back(split) == 0


def test_collect_warns_of_wheels_that_count_turns_without_end(tmp_path, capsys):
    """A base's wheel joints ran 0 to 265 rad in a bag: a model of them is NOVEL once the base
    has driven further than in the bag."""
    n = 200
    frames = np.zeros((n, 8, 8, 3), np.uint8)
    frames[..., 0] = (np.arange(n) * 5 % 255)[:, None, None]
    joints = np.stack([0.3 * np.arange(n), np.sin(0.05 * np.arange(n))], axis=1)   # 60 rad; a swing
    write_rosbag(tmp_path / "base", frames, joints, np.full((n - 1, 2), 0.1), joint_names=("wheel", "arm"))
    assert cli(["collect", "--rosbag", str(tmp_path / "base"), "--out", str(tmp_path / "d.npz"),
                "--image-size", "8", "--episode-steps", "10", "--quiet"]) == 0
    warned = capsys.readouterr().err
    assert "joints wheel count turns without end" in warned and "--joint-names arm" in warned
    assert "joints arm count" not in warned


def test_a_stray_message_naming_a_million_joints_is_refused(tmp_path):
    """Collect takes every joint the topic names: one message naming 10^6 made a 5 GB dataset
    in three minutes (an adversarial bag); it names how to choose the joints instead."""
    from grasp_ros.data.rosbag import MAX_JOINTS
    n = 30
    frames = np.zeros((n, 8, 8, 3), np.uint8)
    frames[..., 0] = (np.arange(n) * 7 % 255)[:, None, None]
    write_rosbag(tmp_path / "robot", frames, np.zeros((n, 2)), np.full((n - 1, 2), 0.1))
    count = [0]

    def stray(m, types):
        count[0] += 1
        if count[0] == 10:
            m.name = [*m.name, *(f"ghost{k}" for k in range(MAX_JOINTS))]
            m.position = np.zeros(len(m.name))
        return [m]
    edit_messages(tmp_path / "robot", tmp_path / "stray", "/joint_states", stray)
    with pytest.raises(DatasetError, match=f"names {MAX_JOINTS + 2} joints in all, more than {MAX_JOINTS}"):
        read(tmp_path / "stray")
    assert read(tmp_path / "stray", joint_names=["x", "y"]).joint_dim == 2


def test_collect_warns_of_joints_never_commanded_and_takes_a_reset_for_no_wrap(tmp_path, capsys):
    """A gripper beside a trajectory's arm joints: never commanded, yet the model would encode it
    (every goal must give it). A joint with hard stops reset across its range leaps by more than
    pi: no angle that wraps (a wrap goes from near +pi to near -pi)."""
    from grasp_ros.cli import main as cli
    n = 400
    t = np.arange(n)
    shoulder = 1.9 * np.sin(0.0078 * t)                             # at its upper stop by step 199
    shoulder[200:] = -2.2 + 0.001 * (t[200:] - 200)                 # a reset from 1.9... to -2.2
    joints = np.stack([shoulder, 0.3 * np.cos(0.03 * t), np.full(n, 0.04)], axis=1)
    frames = np.zeros((n, 16, 16, 3), np.uint8)
    frames[..., 0] = (t * 3 % 255)[:, None, None]
    write_rosbag(tmp_path / "arm", frames, joints, np.full((n - 1, 2), 0.1),
                 joint_names=("shoulder", "elbow", "gripper"), trajectory_joints=("shoulder", "elbow"))
    out = ["--out", str(tmp_path / "d.npz"), "--image-size", "16", "--episode-steps", "10", "--quiet"]
    assert cli(["collect", "--rosbag", str(tmp_path / "arm"), *out]) == 0
    warned = capsys.readouterr().err
    assert "joints ['gripper'] are in joint_states but never commanded" in warned
    assert "--joint-names shoulder,elbow" in warned
    assert "--continuous-joints" not in warned and "joint shoulder leaps" in warned
    assert "never move" not in warned          # the gripper's warning says it once
    assert cli(["collect", "--rosbag", str(tmp_path / "arm"), *out, "--joint-names", "shoulder,elbow"]) == 0
    assert "but never commanded" not in capsys.readouterr().err


def test_collect_records_the_kind_of_an_arrays_commands(tmp_path):
    """A MultiArray's values are velocities unless collect is told otherwise; a kind the message
    type contradicts (a Twist is a twist) is refused."""
    from grasp_ros.cli import main as cli
    from grasp_ros.data import load_dataset
    n = 12
    frames = np.zeros((n, 16, 16, 3), np.uint8)
    joints = np.stack([0.01 * np.arange(n), np.zeros(n)], axis=1)
    write_rosbag(tmp_path / "array", frames, joints, np.full((n - 1, 2), 0.1))
    common = ["--image-size", "16", "--episode-steps", "5", "--quiet"]
    assert cli(["collect", "--rosbag", str(tmp_path / "array"), "--out", str(tmp_path / "p.npz"),
                "--action-kind", "position", *common]) == 0
    assert load_dataset(str(tmp_path / "p.npz")).meta["action_kind"] == "position"
    write_rosbag(tmp_path / "twist", frames, joints, np.full((n - 1, 2), 0.1), command_topic="cmd_vel",
                 twist_fields=("linear.x", "angular.z"))
    assert cli(["collect", "--rosbag", str(tmp_path / "twist"), "--command-topic", "cmd_vel",
                "--out", str(tmp_path / "t.npz"), "--action-kind", "position", *common]) == 2
    assert not (tmp_path / "t.npz").exists()


def test_a_report_at_a_frames_own_stamp_cuts_the_steps_on_both_sides_of_it():
    """An outside arm reported its resets at the stamp of the last frame before them: the sim's
    rule (the frame of t shows the next episode) cut the step before it, and the reset was
    learned as motion in 8 of 12 episodes. At a frame's stamp, both steps are cut; between
    frames, the one step across."""
    from grasp_ros.data.rosbag import reported_cuts
    h = np.arange(6, dtype=np.int64) * 100_000_000                    # frames every 0.1 s
    assert reported_cuts(np.array([200_000_000]), h).tolist() == [False, True, True, False, False]
    assert reported_cuts(np.array([260_000_000]), h).tolist() == [False, False, True, False, False]
    assert not reported_cuts(np.zeros(0, np.int64), h).any()


def test_frames_thinned_by_the_frame_period_are_not_blamed_on_the_cuts():
    """A 20 Hz camera read at --frame-period 0.1 leaves half its frames out by design: an outside
    arm's collect said 52% were left out because the cuts left few runs (they cost 140 frames)."""
    from grasp_ros.commands.collect import dropped_warnings
    meta = {"frames": 7468, "frames_used": 3597, "frames_thinned": 3734, "cuts": {"episode_topic": 12},
            "split": {"episode_steps": 32}}
    assert dropped_warnings(meta) == []
    (warning,) = dropped_warnings(dict(meta, frames_used=1000))
    assert warning.startswith("2734 of the 3734 frames that --frame-period keeps (3734 thinned out) left out")


def test_a_few_unreadable_camera_frames_are_left_out_with_a_warning_and_many_fail_the_import(tmp_path, capsys):
    """A robot's bag of thousands of frames with one a driver's glitch cut short (an audit of
    other cameras: one bad frame failed the whole import). Up to 1% are left out, named in a
    warning; more, and the camera's stream is taken for unreadable, exit 2."""
    n = 400
    frames = np.zeros((n, 8, 8, 3), np.uint8)
    frames[..., 0] = (np.arange(n) % 250)[:, None, None]
    write_rosbag(tmp_path / "robot", frames, np.stack([0.01 * np.arange(n), np.zeros(n)], axis=1),
                 np.full((n - 1, 2), 0.1))

    def cut_every(every):
        seen = [0]

        def change(msg, types):
            seen[0] += 1
            if seen[0] % every == 0:
                msg.data = msg.data[:-5]
            return [msg]
        return change
    out = ["--image-size", "8", "--episode-steps", "10", "--quiet"]
    edit_messages(tmp_path / "robot", tmp_path / "few", "/image", cut_every(100))        # 4 of 400
    assert cli(["collect", "--rosbag", str(tmp_path / "few"), "--out", str(tmp_path / "few.npz"), *out]) == 0
    warned = capsys.readouterr().err
    assert "4 camera frame(s) could not be read and were left out (message 100: image has 187 bytes" in warned
    assert load_dataset(tmp_path / "few.npz").meta["bags"][0]["frames"] == n - 4
    edit_messages(tmp_path / "robot", tmp_path / "many", "/image", cut_every(50))        # 8 of 400
    assert cli(["collect", "--rosbag", str(tmp_path / "many"), "--out", str(tmp_path / "many.npz"), *out]) == 2
    error = capsys.readouterr().err
    assert "/image: 8 of 400 frames cannot be read, more than 1%; the first, message 50: image has 187" in error
    assert not (tmp_path / "many.npz").exists()
