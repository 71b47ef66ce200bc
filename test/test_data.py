"""Datasets: simulator collection, the file format and its errors, windows, rosbag2 import."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grasp_ros.cli import main as cli
from grasp_ros.data import (DatasetError, TransitionData, TransitionWindows, collect_episodes, load_dataset,
                            save_dataset)
from grasp_ros.data.rosbag import read_rosbag
from grasp_ros.sim import make_env

from archive_edits import damaged_copy
from bag_edits import edit_messages
from bag_fixtures import write_rosbag


@pytest.fixture(scope="module")
def data() -> TransitionData:
    return collect_episodes(make_env("wall_door", 50), episodes=4, steps=6, seed=3, progress=False)


def test_collect_is_seeded_and_consistent(data):
    again = collect_episodes(make_env("wall_door", 50), episodes=4, steps=6, seed=3, progress=False)
    assert data.images.shape == (4, 7, 64, 64, 3) and data.images.dtype == np.uint8
    assert data.joints.shape == (4, 7, 2) and data.actions.shape == (4, 6, 2)
    assert np.array_equal(data.images, again.images) and np.array_equal(data.actions, again.actions)
    assert np.abs(data.actions).max() <= 1.0
    # joints are the sim's positions: replaying the actions reproduces them
    env = make_env("wall_door", 50)
    env.position = data.joints[1, 0].astype(np.float64)
    path = env.execute(data.actions[1])
    assert np.allclose(path, data.joints[1], atol=1e-5)
    other = collect_episodes(make_env("wall_door", 50), episodes=4, steps=6, seed=4, progress=False)
    assert not np.array_equal(data.actions, other.actions)


@pytest.mark.parametrize("suffix", ["npz", "pt"])
def test_save_load_round_trip(data, tmp_path, suffix):
    path = tmp_path / f"d.{suffix}"
    save_dataset(data, path)
    back = load_dataset(path)
    for key in ("images", "joints", "actions"):
        assert np.array_equal(getattr(back, key), getattr(data, key))
    assert back.meta == data.meta and back.meta["env"] == "wall_door"


def test_flat_transitions_read_as_one_step_episodes(data, tmp_path):
    path = tmp_path / "flat.npz"
    np.savez(path, images=data.images[:, 0], next_images=data.images[:, 1], joints=data.joints[:, 0],
             next_joints=data.joints[:, 1], actions=data.actions[:, 0], meta=np.array(json.dumps(data.meta)))
    back = load_dataset(path)
    assert back.steps == 1 and back.episodes == 4
    assert np.array_equal(back.images, data.images[:, :2]) and np.array_equal(back.actions, data.actions[:, :1])


def test_truncated_file_gives_clear_error(data, tmp_path):
    path = tmp_path / "d.npz"
    save_dataset(data, path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="truncated"):
        load_dataset(path)
    pt = tmp_path / "d.pt"
    save_dataset(data, pt)
    pt.write_bytes(pt.read_bytes()[:1000])
    with pytest.raises(DatasetError, match="truncated"):
        load_dataset(pt)
    save_dataset(data, pt)      # one bit changed in the frames: torch's reader took it as it was
    with pytest.raises(DatasetError, match="fails its CRC-32"):
        load_dataset(damaged_copy(pt, tmp_path / "damaged.pt"))


def test_bad_files_give_clear_errors(data, tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset(tmp_path / "text.npz")
    np.savez(tmp_path / "nokeys.npz", images=data.images)
    with pytest.raises(DatasetError, match=r"missing \['joints', 'actions', 'meta'\]"):
        load_dataset(tmp_path / "nokeys.npz")
    meta = np.array(json.dumps(data.meta))
    np.savez(tmp_path / "shape.npz", images=data.images, joints=data.joints, actions=data.actions[:, :3], meta=meta)
    with pytest.raises(DatasetError, match="actions must be"):
        load_dataset(tmp_path / "shape.npz")
    np.savez(tmp_path / "dtype.npz", images=data.images.astype(np.float32), joints=data.joints,
             actions=data.actions, meta=meta)
    with pytest.raises(DatasetError, match="uint8"):
        load_dataset(tmp_path / "dtype.npz")
    with pytest.raises(DatasetError, match=r"\.npz or \.pt"):
        save_dataset(data, tmp_path / "d.csv")


def test_windows_cover_each_episode(data):
    windows = TransitionWindows(data, steps=4)
    assert len(windows) == 4 * 3
    item = windows[5]                         # episode 1, start frame 2
    assert item["images"].shape == (5, 64, 64, 3) and item["actions"].shape == (4, 2)
    assert np.array_equal(item["images"].numpy(), data.images[1, 2:7])
    assert np.array_equal(item["actions"].numpy(), data.actions[1, 2:6])
    batch = windows.gather(torch.tensor([0, 11]))
    assert batch["joints"].shape == (2, 5, 2)
    assert np.array_equal(batch["joints"][1].numpy(), data.joints[3, 2:7])
    with pytest.raises(DatasetError, match="do not fit"):
        TransitionWindows(data, steps=7)
    with pytest.raises(IndexError):
        windows[12]


def test_split_is_by_episode(data):
    train, val = data.split(0.25, seed=0)
    assert train.episodes == 3 and val.episodes == 1
    seen = {data.images[i, 0].tobytes() for i in range(4)}
    assert {train.images[i, 0].tobytes() for i in range(3)} | {val.images[0, 0].tobytes()} == seen


def test_rosbag_round_trip(data, tmp_path):
    pytest.importorskip("rosbags")
    bag = tmp_path / "bag"
    write_rosbag(bag, data.images[0], data.joints[0], data.actions[0], period_s=0.1)
    back = read_rosbag(bag, progress=False)
    assert back.episodes == 1 and back.steps == 6
    assert np.array_equal(back.images[0], data.images[0])
    assert np.allclose(back.joints[0], data.joints[0]) and np.allclose(back.actions[0], data.actions[0])
    assert back.meta["frame_period_s"] == pytest.approx(0.1)
    # time average of the held command: command i is sent half-way through step i
    mean = read_rosbag(bag, align="mean", progress=False)
    assert mean.steps == 5
    assert np.allclose(mean.actions[0], 0.5 * (data.actions[0, :-1] + data.actions[0, 1:]), atol=1e-6)


@pytest.mark.parametrize("claimed", [10**12, -5])
def test_rosbag_frames_are_counted_as_read_not_as_the_metadata_claims(data, tmp_path, claimed):
    """metadata.yaml's message counts are a claim: one of 10^12 camera frames made the importer
    allocate 10.9 PiB at once, and -5 failed with a message naming no bag (an adversarial
    audit). The frames are allocated as they come."""
    pytest.importorskip("rosbags")
    import re
    bag = tmp_path / "bag"
    write_rosbag(bag, data.images[0], data.joints[0], data.actions[0], period_s=0.1)
    metadata = bag / "metadata.yaml"
    text = metadata.read_text()
    image = re.search(r"- message_count: \d+\n(\s+)topic_metadata:\n\s+name: /image\n", text)
    assert image is not None, text
    metadata.write_text(text[:image.start()] + f"- message_count: {claimed}\n" + text[image.start():].split("\n", 1)[1])
    back = read_rosbag(bag, progress=False)
    assert back.steps == 6 and np.array_equal(back.images[0], data.images[0])


def test_rosbag_late_frames_pair_by_header_stamps(data, tmp_path):
    """Frames received 0.07 s after they were taken (a 0.1 s period: nearer, by receive time, to
    the next joint state and after the next command): paired by their header stamps, each frame
    gets its own joint state and the command that drove the step to it. A bag without stamps on
    one clock falls back to receive time, which is then wrong, and says so."""
    pytest.importorskip("rosbags")
    bag = tmp_path / "bag"
    write_rosbag(bag, data.images[0], data.joints[0], data.actions[0], period_s=0.1, image_delay_s=0.07)
    back = read_rosbag(bag, progress=False)
    assert back.meta["bags"][0]["joint_pairing"] == "header stamps"
    assert np.array_equal(back.images[0], data.images[0])
    assert np.allclose(back.joints[0], data.joints[0]) and np.allclose(back.actions[0], data.actions[0])
    # Joint stamps shifted by a second (another clock): receive time it is, and off by a frame.
    shifted = tmp_path / "shifted"
    write_rosbag(shifted, data.images[0], data.joints[0], data.actions[0], period_s=0.1, image_delay_s=0.07)
    _shift_joint_stamps(shifted, tmp_path / "other_clock", 1.0)
    other = read_rosbag(tmp_path / "other_clock", progress=False)
    assert other.meta["bags"][0]["joint_pairing"] == "receive time"
    assert np.allclose(other.joints[0][:-1], data.joints[0][1:])


def test_rosbag_of_a_sim_clock_from_zero_pairs_by_header_stamps(data, tmp_path):
    """A recording of a simulation that catches its first step: the first frame and joint state
    are stamped 0, the clock's start. They are stamps all the same: each frame gets its own joint
    state (by receive time it would get the next one), and the period is the stamps' 0.1 s."""
    pytest.importorskip("rosbags")
    bag = tmp_path / "bag"
    n = len(data.images[0])
    write_rosbag(bag, data.images[0], data.joints[0], data.actions[0], times_s=np.arange(n) * 0.1,
                 image_delay_s=0.07)
    back = read_rosbag(bag, progress=False)
    assert back.meta["bags"][0]["joint_pairing"] == "header stamps"
    assert back.meta["frame_period_s"] == pytest.approx(0.1)
    assert np.allclose(back.joints[0], data.joints[0]) and np.allclose(back.actions[0], data.actions[0])


def test_rosbag_joints_named_by_several_publishers_are_merged(data, tmp_path):
    """A robot may publish its joints in several JointState messages on one topic (an arm's
    driver, a gripper's). Each message updates the joints it names, as the controller reads them:
    the dataset is the one of whole messages, and the default joints are every joint named, in
    order of first appearance (here with a wheel no model asked for)."""
    pytest.importorskip("rosbags")
    whole = tmp_path / "whole"
    joints = np.concatenate([data.joints[0], 10 + data.joints[0]], axis=1)
    write_rosbag(whole, data.images[0], joints, data.actions[0], joint_names=("x", "y", "u", "v"),
                 velocities=-joints, image_delay_s=0.02)
    _split_joint_states(whole, tmp_path / "split", [("x", "wheel", "y"), ("v", "u")])
    fields = ("position", "velocity")
    expected = read_rosbag(whole, joint_fields=fields, progress=False)
    split = read_rosbag(tmp_path / "split", joint_fields=fields, joint_names=["x", "y", "u", "v"], progress=False)
    assert split.meta["bags"][0]["joint_pairing"] == expected.meta["bags"][0]["joint_pairing"] == "header stamps"
    assert np.array_equal(split.joints, expected.joints) and np.array_equal(split.images, expected.images)
    assert read_rosbag(tmp_path / "split", progress=False).meta["joint_names"] == ["x", "wheel", "y", "v", "u"]
    with pytest.raises(DatasetError, match=r"lacks joints \['w'\]: no message names them"):
        read_rosbag(tmp_path / "split", joint_names=["x", "w"], progress=False)


def _split_joint_states(src, dst, groups):
    """Each JointState of ``src`` as one message per group of joint names (a wheel at 0), received
    1 ns apart, with the original header stamp."""
    def split(msg, types):
        index = {n: i for i, n in enumerate(msg.name)}
        for group in groups:
            pick = [index.get(n) for n in group]
            yield types["sensor_msgs/msg/JointState"](
                header=msg.header, name=list(group),
                position=np.array([0.0 if i is None else msg.position[i] for i in pick]),
                velocity=np.array([0.0 if i is None else msg.velocity[i] for i in pick]),
                effort=np.array([], dtype=np.float64))
    edit_messages(src, dst, "/joint_states", split)


def _shift_joint_stamps(src, dst, seconds):
    def shift(msg, types):
        msg.header.stamp.sec += int(seconds)
        return [msg]
    edit_messages(src, dst, "/joint_states", shift)


def test_rosbag_resizes_and_selects_joints(data, tmp_path):
    pytest.importorskip("rosbags")
    bag = tmp_path / "bag"
    joints = np.concatenate([data.joints[0], 10 + data.joints[0]], axis=1)
    write_rosbag(bag, data.images[0], joints, data.actions[0], joint_names=("x", "y", "u", "v"))
    back = read_rosbag(bag, image_size=32, joint_names=["v", "x"], progress=False)
    assert back.images.shape == (1, 7, 32, 32, 3) and back.meta["image_size"] == 32
    assert np.allclose(back.joints[0], joints[:, [3, 0]])
    with pytest.raises(DatasetError, match=r"lacks joints \['w'\]"):
        read_rosbag(bag, joint_names=["w"], progress=False)
    with pytest.raises(DatasetError, match="no topic"):
        read_rosbag(bag, image_topic="/camera/missing", progress=False)
    with pytest.raises(DatasetError, match="cannot read the bag"):
        read_rosbag(tmp_path / "nope", progress=False)


@pytest.mark.parametrize("command", [["collect", "--env", "open", "--episodes", "1", "--steps", "2"],
                                     ["train", "--data", "data.npz"], ["record"]])
def test_an_output_in_a_missing_folder_is_refused_before_any_work(tmp_path, capsys, command):
    """collect wrote its dataset only after the work, then failed with a traceback."""
    out = tmp_path / "no_such_folder" / "out"
    args = [*command, str(out)] if command == ["record"] else [*command, "--out", str(out)]
    assert cli(args) == 2
    assert f"folder {str(out.parent)!r} does not exist" in capsys.readouterr().err
    assert not out.parent.exists()


def test_collect_command(tmp_path, data):
    out = tmp_path / "sim.npz"
    assert cli(["collect", "--env", "wall_door", "--episodes", "2", "--steps", "3", "--seed", "1",
                "--out", str(out), "--quiet"]) == 0
    sim = load_dataset(out)
    assert sim.episodes == 2 and sim.steps == 3 and sim.meta["seed"] == 1 and sim.meta["max_step"] > 0
    pytest.importorskip("rosbags")
    bag = tmp_path / "bag"
    write_rosbag(bag, data.images[0], data.joints[0], data.actions[0])
    assert cli(["collect", "--rosbag", str(bag), "--episode-steps", "0", "--out", str(tmp_path / "bag.npz"),
                "--quiet"]) == 0
    assert load_dataset(tmp_path / "bag.npz").steps == 6
    assert cli(["collect", "--rosbag", str(bag), "--episode-steps", "3", "--out", str(tmp_path / "bag.npz"),
                "--quiet", "--crop", "stretch"]) == 0
    assert load_dataset(tmp_path / "bag.npz").episodes == 2
    assert load_dataset(tmp_path / "bag.npz").meta["crop"] == "stretch"
    for names in (["y", "x"], ["y,x"]):    # spaces or commas, like the other list options
        assert cli(["collect", "--rosbag", str(bag), "--episode-steps", "0", "--joint-names", *names,
                    "--out", str(tmp_path / "named.npz"), "--quiet"]) == 0
        assert load_dataset(tmp_path / "named.npz").meta["joint_names"] == ["y", "x"]
    # one file of a bag, unreadable alone (as a file of a message-compressed bag is): named
    part = bag / "part_1.mcap"
    part.write_bytes(b"\x89MCAP0\r\n" + bytes(64))
    with pytest.raises(DatasetError, match="read from its folder"):
        read_rosbag(part, progress=False)
    assert cli(["collect", "--rosbag", str(tmp_path / "missing"), "--out", str(tmp_path / "x.npz"), "--quiet"]) == 2
    assert cli(["collect", "--env", "nowhere", "--out", str(tmp_path / "x.npz"), "--quiet"]) == 2


def test_collect_warns_of_commands_that_never_stop_or_never_change():
    """A forward-only bag (linear.x in [0.1, 0.5]) never showed the model a stop; a kept field
    that never changed (linear.z) would get invented bounds. Both are named at collect."""
    from grasp_ros.commands.collect import command_range_warnings
    rng = np.random.default_rng(0)
    actions = np.stack([rng.uniform(0.1, 0.5, (2, 6)), np.zeros((2, 6)), rng.uniform(-1, 1, (2, 6))], -1)
    data = TransitionData(np.zeros((2, 7, 8, 8, 3), np.uint8), np.zeros((2, 7, 1), np.float32),
                          actions.astype(np.float32), {"action_names": ["linear.x", "linear.z", "angular.z"]})
    constant, stop = command_range_warnings(data)
    assert constant.startswith("action linear.z is 0 in every command") and "--twist-fields" in constant
    assert stop.startswith("action linear.x ranges over [0.1") and "never stopped the robot" in stop
    data.actions[:, :, 0] -= 0.3          # now it goes through zero; linear.z still never moves
    assert command_range_warnings(data) == [constant]
