"""grasp-ros replay: a recorded run fed back into a real controller process over DDS.

The shipped bag (test/data/demo_lockstep: `grasp-ros demo --lockstep 20` recorded by
`grasp-ros record`) and a bag recorded here from the sim closed loop replay exactly with their
recorded settings (twice alike), in mcap and sqlite3, with raw and compressed images; a changed
setting is flagged and fails; recorded iteration counts reach the controller cycle by cycle;
every kind of bad bag is refused with its reason, exit status 2 and nothing written.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grasp_ros.replay.bag import Cycle, Input, Recording
from grasp_ros.ros.recorder import PARAMETERS_KEY
from grasp_ros.replay.schedule import activation_clock, boundaries
from grasp_ros.timebase import NS

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not importable")
pytest.importorskip("grasp_ros.msg", exc_type=ImportError)

BAG = Path(__file__).resolve().parent / "data" / "demo_lockstep"
DIAGNOSTICS = "/grasp_controller/plan_diagnostics"
TIMEOUT = 600


def _env() -> dict:
    return dict(os.environ, ROS_DOMAIN_ID=str(random.randint(100, 230)),
                ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")


def replay(bag: Path, out: Path, *args: str) -> tuple[int, str, dict]:
    """Run `grasp-ros replay` in its own process: (exit status, its output, the JSON row)."""
    done = subprocess.run([sys.executable, "-m", "grasp_ros.cli", "replay", str(bag), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    path = out / "replay.json"
    row = json.loads(path.read_text())["rows"][0] if path.exists() else {}
    return done.returncode, done.stdout + done.stderr, row


def replayed_commands(out: Path) -> np.ndarray:
    with open(out / "cycles.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keys = sorted(k for k in rows[0] if k.startswith("command") and k.endswith("_replayed"))
    return np.asarray([[float(r[k]) for k in keys] for r in rows])


def rewrite(src: Path, dst: Path, storage: str = "mcap", transform=None, custom: bool = True,
            installed: tuple[str, ...] = (), parameters=None, compression: str = "",
            recorded=None) -> Path:
    """A copy of the bag ``src`` as ``dst``: ``transform(topic, msgtype, received, raw)`` returns
    the (topic, msgtype, received, raw) to write instead, or None to leave a message out. Topics in
    ``installed`` are described by their type's installed definition, not the bag's.
    ``parameters(values)`` edits the recorded controller parameters, ``recorded(document)`` the
    whole record of them. ``compression`` "file" or "message": zstd, as ``ros2 bag record
    --compression-mode`` writes it."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from grasp_ros.ros.recorder import _ensure_type

    store = get_typestore(Stores.ROS2_KILTED)
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    writer = Writer(dst, version=9, storage_plugin=plugin)
    if compression:
        writer.set_compression(CompressionMode[compression.upper()], CompressionFormat.ZSTD)
    with Reader(src) as reader, writer:
        sources = {c.topic: c for c in reader.connections}
        made = {}
        for conn, received, raw in reader.messages():
            item = (conn.topic, conn.msgtype, received, bytes(raw))
            item = transform(*item) if transform else item
            if item is None:
                continue
            topic, kind, received, raw = item
            if topic not in made:
                source = sources.get(topic)
                if source is not None and source.msgtype == kind and topic not in installed:
                    made[topic] = writer.add_connection(topic, kind, msgdef=source.msgdef.data, rihs01=source.digest)
                else:
                    _ensure_type(store, kind)
                    made[topic] = writer.add_connection(topic, kind, typestore=store)
            writer.write(made[topic], received, raw)
        if custom:
            for key, value in (reader.storage.metadata.custom or {}).items():
                if key == PARAMETERS_KEY and (parameters or recorded) is not None:
                    document = json.loads(value)
                    if parameters is not None:
                        parameters(document["parameters"])
                    if recorded is not None:
                        recorded(document)
                    value = json.dumps(document)
                writer.set_custom_data(key, value)
    return dst


def _edit(raw: bytes, msgtype: str, change) -> bytes:
    from rclpy.serialization import deserialize_message, serialize_message

    from grasp_ros.replay.bag import message_class

    msg = deserialize_message(raw, message_class(msgtype))
    change(msg)
    return serialize_message(msg)


def compressed(topic, kind, received, raw):
    """Camera frames as PNG on image/compressed (lossless: the same pixels reach the model)."""
    if topic != "/image":
        return topic, kind, received, raw
    import cv2
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CompressedImage, Image

    image = deserialize_message(raw, Image)
    rgb = np.frombuffer(bytes(image.data), np.uint8).reshape(image.height, image.width, 3)
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    msg = CompressedImage(header=image.header, format="rgb8; png compressed bgr8", data=png.tobytes())
    return "/image/compressed", "sensor_msgs/msg/CompressedImage", received, serialize_message(msg)


# -- exact replays -------------------------------------------------------------------------

def test_the_shipped_bag_replays_exactly(tmp_path):
    """The README's worked example, with its recorded settings: max command difference 0."""
    out = tmp_path / "out"
    code, output, row = replay(BAG, out)
    assert code == 0, output
    assert row["bench"] == "replay" and row["mode"] == "open_loop" and row["passed"]
    assert row["compared"] == row["cycles"] == 54 and row["storage"] == "mcap" and row["checksums"] == 2
    assert row["max_command_diff"] == 0.0 and row["status_changes"] == 0
    assert row["input_mismatches"] == 0 and row["missing_cycles"] == 0 and row["extra_cycles"] == 0
    assert row["parameters_from"].startswith("recorded in the bag")
    assert row["iteration_mode"] == "parameter" and row["settings"]["planner.iterations"] == 20
    assert row["speed_vs_real_time"] > 0
    # Recorded on AVX2 kernels: a newer CPU runs them again for the replay (same rounding).
    assert row["cpu_capability"] == {"recorded": "avx2", "replayed": "avx2"}
    report = (out / "replay.md").read_text()
    assert "PASSED" in report and "Open loop" in report and "did not react" in report
    assert "x real time" in report
    assert (out / "replay.png").stat().st_size > 0 and (out / "controller.log").exists()


EPOCH_NS = 1_796_400_000 * NS     # December 2026: a robot's bag is stamped by the wall clock


def _shift_times(msg, by_ns: int) -> None:
    """Every builtin_interfaces/Time in ``msg`` (headers, /clock, nested messages) ``by_ns`` later."""
    from builtin_interfaces.msg import Time
    for name in msg.get_fields_and_field_types():
        value = getattr(msg, name)
        if isinstance(value, Time):
            ns = value.sec * NS + value.nanosec + by_ns
            value.sec, value.nanosec = ns // NS, ns % NS
        elif hasattr(value, "get_fields_and_field_types"):
            _shift_times(value, by_ns)
        elif isinstance(value, list):
            for item in value:
                if hasattr(item, "get_fields_and_field_types"):
                    _shift_times(item, by_ns)


def at_epoch(topic, kind, received, raw):
    """The message as a robot in real time would have recorded it: at a wall-clock epoch."""
    return topic, kind, received + EPOCH_NS, _edit(raw, kind, lambda m: _shift_times(m, EPOCH_NS))


def test_a_bag_stamped_by_the_wall_clock_replays_exactly(tmp_path):
    """A robot's bag as `ros2 bag record --storage sqlite3 --compression-mode file` writes it
    (zstd-compressed files), stamped by the wall clock. At 1.8e9 s a float's step is ~240 ns, and
    the controller's cycle times pass through one: its reports must still be matched to the /clock
    that ran them (before, the replay waited for an exact stamp that never came)."""
    bag = rewrite(BAG, tmp_path / "epoch", storage="sqlite3", transform=at_epoch, compression="file")
    assert [p.name for p in bag.iterdir() if p.suffix != ".yaml"] == ["epoch.db3.zstd"]
    code, output, row = replay(bag, tmp_path / "out", "--end", "1.0")
    assert code == 0, output
    assert row["compared"] == 11 and row["max_command_diff"] == 0.0 and row["status_changes"] == 0
    # (was reported as mcap: the storage was read from file names ending in .db3)
    assert row["storage"] == "sqlite3" and row["compression"] == "zstd per file"
    assert "- bag: sqlite3 (zstd per file compressed)" in (tmp_path / "out" / "replay.md").read_text()


def test_two_cycle_reports_received_swapped_replay_in_stamp_order(tmp_path):
    """A recorder joining a run under load got a late cycle's report after the next cycle's
    (an outside robot's recording): neighbours swapped are put in stamp order, not refused."""
    from rosbags.rosbag2 import Reader
    with Reader(BAG) as reader:
        received = [t for c, t, _ in reader.messages() if c.topic == DIAGNOSTICS]

    def swap(topic, kind, t, raw):
        if topic == DIAGNOSTICS and t == received[2]:
            t = received[3] + 1_000              # the third cycle's report after the fourth's
        return topic, kind, t, raw
    bag = rewrite(BAG, tmp_path / "swapped", transform=swap)
    from grasp_ros.replay.bag import read_recording
    cycles = read_recording(bag).cycles
    assert [c.received for c in cycles[2:4]] == [received[3] + 1_000, received[3]]   # as received...
    assert cycles[2].time < cycles[3].time                                             # ...by stamp
    code, output, row = replay(bag, tmp_path / "out", "--end", "1.0")
    assert code == 0, output
    assert row["compared"] == 11 and row["max_command_diff"] == 0.0 and row["status_changes"] == 0


ROGUE_CLOCK = """
import time, rclpy
from rosgraph_msgs.msg import Clock
rclpy.init()
node = rclpy.create_node("rogue_clock")
pub = node.create_publisher(Clock, "/clock", 10)
t = 0
while True:
    t += 1
    msg = Clock()
    msg.clock.sec = 5000 + t
    pub.publish(msg)
    time.sleep(0.05)
"""


def test_another_clock_on_the_domain_is_named_instead_of_driving_the_controller(tmp_path):
    """A sim or another replay left running on the same DDS domain would drive the controller's
    clock too, and the replay would wait for cycles that are not its own."""
    env = _env()
    rogue = subprocess.Popen([sys.executable, "-c", ROGUE_CLOCK], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        done = subprocess.run([sys.executable, "-m", "grasp_ros.cli", "replay", str(BAG), "--out",
                               str(tmp_path / "out"), "--end", "0.5"],
                              capture_output=True, text=True, timeout=TIMEOUT, env=env)
    finally:
        rogue.kill()
        rogue.wait()
    output = done.stdout + done.stderr
    assert done.returncode == 3, output
    assert f"1 other publisher(s) of /clock on DDS domain {env['ROS_DOMAIN_ID']}" in output


LOCK_STEP = ("--lockstep", "5")


def record_demo(bag: Path, tmp_path: Path, *how: str) -> str:
    """`grasp-ros record` (sqlite3) around a demo (lock step unless ``how`` says otherwise), the
    recorder started first; the recorder's output. The recorder subscribes to a topic once it sees its publisher, so on a busy
    machine it can miss the controller's first cycles: such a recording (its first cycle warm
    started) is made again, up to three times."""
    from grasp_ros.replay.bag import read_recording

    env = _env()
    for attempt in range(3):
        shutil.rmtree(bag, ignore_errors=True)
        recorder = subprocess.Popen([sys.executable, "-m", "grasp_ros.cli", "record", str(bag), "--storage", "sqlite3"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lines = []
        try:
            while not (lines and lines[-1].startswith("recording to")):   # its node is up
                lines.append(recorder.stdout.readline())
                assert lines[-1], "".join(lines)           # it ended before it began recording
            demo = subprocess.run([sys.executable, "-m", "grasp_ros.cli", "demo", "--model", "analytic",
                                   *(how or LOCK_STEP), "--max-episode-time", "1.5", "--seed", "3",
                                   "--start-delay", "3",
                                   "--out", str(tmp_path / f"demo{attempt}")],
                                  capture_output=True, text=True, timeout=TIMEOUT, env=env)
            assert "control cycles" in demo.stdout, demo.stdout + demo.stderr
        finally:
            recorder.send_signal(signal.SIGINT)
            output = "".join(lines) + recorder.communicate(timeout=60)[0]
        assert "recorded the parameters of /grasp_controller" in output, output
        assert list(bag.glob("*.db3")), output
        missing = _missing_start(read_recording(bag))
        if not missing:
            return output
        print(f"recording {attempt + 1} {missing}; again")
    raise AssertionError("three recordings all missed the start of the run")


def _missing_start(recording) -> str:
    """What a recording lacks of its run's start (the recorder discovers the run's topics a little
    late on a busy machine), or ""."""
    if recording.cycles[0].warm_started or recording.cycles[0].time > 0.15 * NS:   # the first: 0.1 s
        return "began after the controller's first cycle"
    stamps = {i.stamp for i in recording.inputs if i.role in ("image", "joints")}
    for cycle in recording.cycles:
        if math.isfinite(cycle.observation_age):
            used = cycle.time - int(round(cycle.observation_age * NS))
            if not any(abs(used - s) <= 1000 for s in stamps):
                return f"lacks the observation of the cycle at {cycle.time / NS:.2f} s"
    return ""


def test_recorded_from_the_sim_closed_loop_then_replayed_twice_alike(tmp_path):
    """Record the closed loop (sim + controller in lock step, sqlite3) with grasp-ros record,
    then replay it twice: both command exactly what was recorded, and alike. Without syncs (as
    config/arm_controller.yaml ran before it set planner.warm_states): the controller left
    planner.warm_states unset, and a replay that took that for a bag from before the parameter
    (its legacy value) planned otherwise."""
    bag = tmp_path / "run"
    record_demo(bag, tmp_path, *LOCK_STEP, "-p", "planner.sync_every:=0")
    from grasp_ros.replay.bag import read_recording
    recording = read_recording(bag)
    assert "planner.warm_states" in recording.parameters_unset
    assert "planner.warm_states" not in recording.parameters
    runs = []
    for name in ("one", "two"):
        code, output, row = replay(bag, tmp_path / name)
        assert code == 0, output
        assert row["storage"] == "sqlite3" and row["model"] == "analytic" and row["compared"] >= 10
        assert row["checksums"] == 0     # sqlite3 has none; the report says what that leaves
        assert "no checksums checked (a sqlite3 bag" in (tmp_path / name / "replay.md").read_text()
        assert row["parameters_from"].startswith("recorded in the bag")
        assert row["max_command_diff"] == 0.0 and row["status_changes"] == 0 and row["input_mismatches"] == 0
        runs.append(replayed_commands(tmp_path / name))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_late_plans_of_a_realtime_run_replay_exactly(tmp_path):
    """A controller in real time whose planner can never finish by its deadline (a 0.1 ms solve
    budget; the sim steps when a command arrives): every cycle that plans is late (FALLBACK, the
    previous plan's action), a cycle that comes while the late plan still runs is busy (FALLBACK),
    and the late plan warm-starts the next cycle. The bag holds the late plans' reports
    (~/late_plans); the replay plans each late cycle again with its late plan's counts, sends the
    previous plan's action, keeps the busy cycles unplanned, and repeats the run exactly."""
    from grasp_ros.replay.bag import read_recording

    bag = tmp_path / "late"
    record_demo(bag, tmp_path, *LOCK_STEP, "-p", "timing:=realtime", "-p", "solve_budget:=0.0001")
    recording = read_recording(bag)
    fallbacks = [c for c in recording.cycles if c.status == 2]
    assert len(fallbacks) >= 5 and recording.late_plans, [c.status_text for c in recording.cycles]
    reported = {c.time for c in recording.late_plans}
    assert reported <= {c.time for c in fallbacks}
    # A late plan still running when the run ended is never reported: replay up to it.
    unreported = [c.time for c in fallbacks if c.time > max(reported)
                  and not c.status_text.startswith("FALLBACK: the planner is still")]
    end = (min(unreported) - recording.cycles[0].time) / NS - 0.05 if unreported else math.inf
    fallbacks = [c for c in fallbacks if c.time - recording.cycles[0].time <= end * NS]
    code, output, row = replay(bag, tmp_path / "out", "--end", str(end))
    assert code == 0, output
    assert row["iteration_mode"] == "recorded" and row["late_cycles"] == len(recording.late_plans)
    assert row["late_cycles"] + row["busy_cycles"] == len(fallbacks)
    assert row["max_command_diff"] == 0.0 and row["status_changes"] == 0 and row["input_mismatches"] == 0
    assert row["settings"]["replay.late_cycles"] and "replay.late_cycles" not in row["changed"]
    report = (tmp_path / "out" / "replay.md").read_text()
    assert f"{row['late_cycles']} late" in report

    # Without the late plans' reports (a bag recorded without the topic), they cannot repeat.
    blind = rewrite(bag, tmp_path / "blind", transform=lambda t, k, r, raw: None if t.endswith("late_plans")
                    else (t, k, r, raw))
    code, output, row = replay(blind, tmp_path / "blind_out", "--end", str(end))
    assert code == 1 and row["status_changes"] >= 1 and row["late_cycles"] == 0, output
    assert "no late plan report" in (tmp_path / "blind_out" / "replay.md").read_text()


def test_compressed_images_and_recorded_iteration_counts(tmp_path):
    """The camera as PNG on image/compressed, in a bag compressed per message (zstd);
    planner.iterations changed to 3, but each cycle set to its recorded count (20) before it runs
    (how a realtime recording is replayed): exact."""
    bag = rewrite(BAG, tmp_path / "compressed", transform=compressed, compression="message")
    code, output, row = replay(bag, tmp_path / "out", "-p", "planner.iterations:=3",
                               "--iterations", "recorded", "--end", "0.5")
    assert code == 0, output
    assert row["storage"] == "mcap" and row["compression"] == "zstd per message"
    assert row["image_transport"] == "compressed" and row["settings"]["image_transport"] == "compressed"
    assert row["iteration_mode"] == "recorded" and row["settings"]["planner.iterations"] == 3
    assert row["compared"] == 6 and row["max_command_diff"] == 0.0 and row["iteration_changes"] == 0
    assert "planner.iterations := 20" in (tmp_path / "out" / "controller.log").read_text()


def test_recorded_sync_counts_reach_the_controller(tmp_path):
    """Under a wall-clock budget GRASP skips the syncs that no longer fit; each cycle is replayed
    capped at its recorded count. The shipped bag's first 6 cycles (20 iterations, so 2 syncs each)
    with their counts written in: exact. Written as if their syncs had been skipped: the replay
    sets planner.max_syncs := 0 and its commands differ from the recorded (synced) ones. The
    start sample counts (none drawn here) reach the controller alike."""
    def with_syncs(count):
        def transform(topic, kind, received, raw):
            if topic == DIAGNOSTICS:
                raw = _edit(raw, kind, lambda m: (setattr(m, "syncs", count if m.iterations else 0),
                                                  setattr(m, "start_samples", 0)))
            return topic, kind, received, raw
        return transform

    for count, exact in ((2, True), (0, False)):
        bag = rewrite(BAG, tmp_path / f"syncs{count}", transform=with_syncs(count), installed=(DIAGNOSTICS,))
        out = tmp_path / f"out{count}"
        code, output, row = replay(bag, out, "--iterations", "recorded", "--end", "0.5")
        assert row["compared"] == 6 and row["iteration_mode"] == "recorded", output
        assert (code == 0 and row["max_command_diff"] == 0.0) if exact else (code == 1 and row["max_command_diff"] > 0), output
        log = (out / "controller.log").read_text()
        assert f"planner.max_syncs := {count}" in log and "planner.max_start_samples := 0" in log


def test_an_overdue_cycle_replays_as_the_stop(tmp_path):
    """A real-time controller held up (stopped, starved) sends the stop instead of a command
    ready long after its deadline (overdue), its plan still the warm start. The replay names
    those cycles (replay.overdue_cycles): the same cycle, then the stop. The shipped bag with its
    fourth cycle written as overdue: exact; without the name it would send the plan's command."""
    from grasp_ros.control import reasons
    seen = []

    def overdue(msg):
        seen.append(msg.header.stamp)
        if len(seen) == 4:
            msg.status, msg.deadline_missed, msg.command = 2, True, [0.0] * len(msg.command)
            msg.status_text = "FALLBACK: " + reasons.overdue("ready 0.700 s after the cycle began", "OK", "") + ": zero"

    bag = rewrite(BAG, tmp_path / "overdue", installed=(DIAGNOSTICS,), transform=lambda topic, kind, received, raw: (
        topic, kind, received, _edit(raw, kind, overdue) if topic == DIAGNOSTICS else raw))
    code, output, row = replay(bag, tmp_path / "out", "--iterations", "recorded", "--end", "0.8")
    assert row["overdue_cycles"] == 1 and row["settings"]["replay.overdue_cycles"], output
    assert code == 0 and row["max_command_diff"] == 0.0 and row["status_changes"] == 0, output
    assert "1 overdue" in (tmp_path / "out" / "replay.md").read_text()


# -- changed settings ----------------------------------------------------------------------

@pytest.mark.parametrize("change, window", [("seed:=1", ("1.0", "1.2")), ("planner:=cem", ("0", "0.2"))])
def test_a_changed_setting_is_flagged_and_fails(tmp_path, change, window):
    """A different seed (replayed from the middle of the bag: the cycles before deliver their
    inputs all at once) or planner: flagged, exit status 1, the inputs still the recorded ones."""
    code, output, row = replay(BAG, tmp_path / "out", "-p", change, "--start", window[0], "--end", window[1])
    assert code == 1, output
    assert not row["passed"] and row["max_command_diff"] > 1e-6
    assert any(f.startswith("max_command_diff") for f in row["failures"])
    name, value = change.split(":=")
    assert str(row["changed"][name]) == value
    assert row["first_command_diff_t"] == pytest.approx(float(window[0])) and row["input_mismatches"] == 0
    report = (tmp_path / "out" / "replay.md").read_text()
    assert "FAILED" in report and f"`{name}`" in report
    assert "replay FAILED: max_command_diff" in output


def test_tolerances_decide_the_verdict():
    from grasp_ros.replay.compare import Tolerances, compare

    cycles = [_cycle(0.1 * (k + 1), k, 0.0) for k in range(3)]
    replayed = {k: dataclasses.replace(cycles[k], command=np.asarray([0.0, 0.01 * k]), status=0 if k < 2 else 1)
                for k in range(3)}
    strict = compare(cycles, [0, 1, 2], replayed, Tolerances())
    assert not strict.passed and strict.summary["max_command_diff"] == pytest.approx(0.02)
    assert strict.summary["per_dimension"][1]["max_diff"] == pytest.approx(0.02)
    assert strict.summary["status_change_list"] == [{"t": pytest.approx(0.2), "recorded": "OK", "replayed": "STALE"}]
    loose = compare(cycles, [0, 1, 2], replayed, Tolerances(max_command_diff=0.05, status_changes=1))
    assert loose.passed, loose.failures
    assert not compare(cycles, [0, 1, 2], {0: replayed[0]}, Tolerances(None, None, None)).passed   # missing cycles
    # A replayed cycle without the goal the recorded one had: the recorder got the goal late.
    late_goal = {**replayed, 2: dataclasses.replace(replayed[2], status_text="STALE: no goal yet: zero")}
    (note,) = compare(cycles, [0, 1, 2], late_goal, Tolerances()).summary["notes"]
    assert note.startswith("1 replayed cycle(s) had no goal yet where the recorded ones had one "
                           "(from t = 0.200 s): the recorder received the goal after")
    assert compare(cycles, [0, 1, 2], replayed, Tolerances()).summary["notes"] == []
    # NaN is no difference within a tolerance (it passed: NaN > tolerance is False)
    poisoned = {**replayed, 1: dataclasses.replace(replayed[1], command=np.asarray([math.nan, 0.0]))}
    nan = compare(cycles, [0, 1, 2], poisoned, Tolerances(max_command_diff=1.0, status_changes=1))
    assert not nan.passed and nan.summary["max_command_diff"] == math.inf


# -- bad bags ------------------------------------------------------------------------------

def _drop(*topics):
    return lambda topic, kind, received, raw: None if topic in topics else (topic, kind, received, raw)


def _string_image(topic, kind, received, raw):
    if topic != "/image":
        return topic, kind, received, raw
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String
    return topic, "std_msgs/msg/String", received, serialize_message(String(data="not an image"))


def _another_robots(topic, kind, received, raw):
    """The bag of a robot with three actions (with custom=False: no recorded parameters)."""
    if topic == DIAGNOSTICS:
        raw = _edit(raw, kind, lambda m: setattr(m, "command", [*m.command, 0.0]))
    return topic, kind, received, raw


def test_a_controller_with_another_model_than_the_bags_is_named_at_its_first_cycle(tmp_path):
    """Replayed with the defaults (the bag holds no parameters), the controller commands two
    values where the bag's commanded three: nothing compares, and the replay says so after one
    cycle (not a traceback after all of them, exit status 1)."""
    bag = rewrite(BAG, tmp_path / "three", transform=_another_robots, custom=False)
    code, output, _ = replay(bag, tmp_path / "out")
    assert code == 3, output
    assert "commands 2 value(s) a cycle, the recorded one 3" in output
    assert "the bag holds no controller parameters" in output and "Traceback" not in output


def test_a_bag_cannot_make_the_replay_run_python_code(tmp_path):
    """A bag is data from anyone: its recorded allow_python_models does not carry over, so a bag
    naming a model os:system (with its command as the option) is refused before anything runs,
    exit 2, nothing written; the replay's own -p allow_python_models:=true is what allows code."""
    marker = tmp_path / "ran"
    bag = rewrite(BAG, tmp_path / "hostile", parameters=lambda values: values.update(
        allow_python_models=True, model="os:system", model_options=f"{{command: 'touch {marker}'}}"))
    code, output, _ = replay(bag, tmp_path / "out", "--end", "0.5")
    assert code == 2, output
    assert "would import and run Python code (model 'os:system')" in output
    assert "-p allow_python_models:=true" in output
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_camera_under_another_name_is_found_or_asked_for(tmp_path):
    """A robot's camera under its own name (/camera/color/image_raw, a RealSense's) was not
    among the names the replay looks for, and the controller read no camera: the only camera
    topic of the bag is its camera; with two, the replay asks which (the controller would be
    STALE throughout): a bad bag, exit 2, nothing written."""
    bag = rewrite(BAG, tmp_path / "realsense", transform=lambda topic, kind, received, raw: (
        "/camera/color/image_raw" if topic == "/image" else topic, kind, received, raw))
    code, output, row = replay(bag, tmp_path / "found", "--end", "0.5")
    assert code == 0 and row["max_command_diff"] == 0.0, output
    frames = iter(range(10**6))
    two = rewrite(BAG, tmp_path / "two_cameras", transform=lambda topic, kind, received, raw: (
        (f"/camera{next(frames) % 2}/image_raw" if topic == "/image" else topic), kind, received, raw))
    code, output, _ = replay(two, tmp_path / "out", "--end", "0.5")
    assert code == 2, output                               # a bad bag: nothing written
    assert not (tmp_path / "out").exists()
    assert f"bag {str(two)!r}: the controller reads a camera, and the bag has none among /image" in output
    assert "--image-topic" in output
    code, output, row = replay(bag, tmp_path / "named", "--end", "0.5", "--image-topic", "/camera/color/image_raw")
    assert code == 0 and row["max_command_diff"] == 0.0, output


def _stamps_back():
    seen = []

    def transform(topic, kind, received, raw):
        if topic == DIAGNOSTICS:
            seen.append(received)
            if len(seen) == 5:   # the fifth cycle stamped before the fourth
                def back(msg):
                    msg.header.stamp.nanosec -= 200_000_000
                raw = _edit(raw, kind, back)
        return topic, kind, received, raw
    return transform


def _without_metadata(path: Path) -> Path:
    bag = rewrite(BAG, path)
    (bag / "metadata.yaml").unlink()
    return bag


def _truncated_mcap(path: Path) -> Path:
    bag = rewrite(BAG, path)
    data = next(bag.glob("*.mcap"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    return bag


def _truncated_sqlite(path: Path) -> Path:
    import sqlite3
    bag = rewrite(BAG, path, storage="sqlite3")
    with sqlite3.connect(next(bag.glob("*.db3"))) as db:
        db.execute("DELETE FROM messages WHERE id > (SELECT MAX(id) FROM messages) / 2")
    return bag


def _damaged(path: Path) -> Path:
    """The shipped bag (which carries MCAP's CRCs) with one bit changed in a camera frame: it
    replayed as a command difference, a damaged file taken for a changed controller."""
    shutil.copytree(BAG, path)
    data = next(path.glob("*.mcap"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 3] ^= 0x01          # inside the first chunk, among the frames
    data.write_bytes(bytes(raw))
    return path


def _cycle_edit(change, which: int = 3):
    """A transform that changes the ``which``-th recorded cycle's PlanDiagnostics."""
    seen = []

    def transform(topic, kind, received, raw):
        if topic == DIAGNOSTICS:
            seen.append(received)
            if len(seen) == which:
                raw = _edit(raw, kind, change)
        return topic, kind, received, raw
    return transform


def _every_cycle_edit(change):
    """A transform that changes every recorded cycle's PlanDiagnostics."""
    def transform(topic, kind, received, raw):
        return topic, kind, received, _edit(raw, kind, change) if topic == DIAGNOSTICS else raw
    return transform


def _set(name, value):
    return lambda msg: setattr(msg, name, value)


def _nan_command(msg):
    msg.command = [math.nan, *msg.command[1:]]


BAD_BAGS = {
    "missing diagnostics": (lambda p: rewrite(BAG, p, transform=_drop(DIAGNOSTICS)),
                            "no /grasp_controller/plan_diagnostics topic"),
    "missing observations": (lambda p: rewrite(BAG, p, transform=_drop("/image", "/joint_states")),
                             "no observation topic (camera /image or /image/compressed, or /joint_states; name "
                             "yours with --image-topic or --joint-topic)"),
    "truncated mcap": (_truncated_mcap, "truncated"),
    "truncated sqlite3": (_truncated_sqlite, "truncated"),
    "a changed bit": (_damaged, "demo_lockstep.mcap: damaged: the data section (bytes 0-"),
    "wrong type": (lambda p: rewrite(BAG, p, transform=_string_image),
                   "/image (image) is std_msgs/msg/String; expected sensor_msgs/msg/Image"),
    "no goal": (lambda p: rewrite(BAG, p, transform=_drop("/goal_state", "/goal_image")), "no goal"),
    "stamps out of order": (lambda p: rewrite(BAG, p, transform=_stamps_back()), "stamps out of order"),
    "not a bag": (lambda p: p, "not found"),
    # what the controller can never have reported (an adversary's bag): NaN passed the check, a
    # huge age or delay made a traceback, a huge iteration count exit 3 or hours of planning
    "a non-finite command": (lambda p: rewrite(BAG, p, transform=_cycle_edit(_nan_command)),
                             "has a non-finite command [nan,"),
    "an age beyond any clock": (lambda p: rewrite(BAG, p, transform=_cycle_edit(_set("observation_age", 1e300))),
                                "observation_age 1e+300 s is beyond what a clock can give"),
    "a planned cycle without an age": (lambda p: rewrite(BAG, p, transform=_cycle_edit(_set("observation_age", math.nan))),
                                       "planned (OK) with observation_age nan"),
    "a delay beyond any clock": (lambda p: rewrite(BAG, p, transform=_cycle_edit(_set("command_delay", 1e12))),
                                 "command_delay 1e+12 s is beyond what a clock can give"),
    "iterations beyond the planner's": (lambda p: rewrite(BAG, p, transform=_cycle_edit(_set("iterations", 4_000_000_000))),
                                        "4000000000 iterations (planner.iterations allows at most 100000"),
    # replayed before, then exit 1 (a status change) or 3 (another model) with files written
    "an unknown status": (lambda p: rewrite(BAG, p, transform=_cycle_edit(_set("status", 200))),
                          "has status 200, which the controller never reports"),
    "empty commands": (lambda p: rewrite(BAG, p, transform=_every_cycle_edit(_set("command", []))),
                       "has an empty command"),
    "a folder without metadata.yaml": (_without_metadata, "a folder without metadata.yaml: give the bag's .mcap"),
}


@pytest.mark.parametrize("kind", list(BAD_BAGS))
def test_a_bad_bag_is_refused_with_its_reason_and_nothing_written(tmp_path, capsys, kind):
    from grasp_ros.cli import main

    make, reason = BAD_BAGS[kind]
    bag = make(tmp_path / "bad")
    out = tmp_path / "out"
    code = main(["replay", str(bag), "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2, error
    assert f"bag {str(bag)!r}" in error and reason in error, error
    assert not out.exists()


def test_bad_options_are_refused_before_anything_runs(tmp_path, capsys):
    from grasp_ros.cli import main

    for args, reason in ((["-p", "no_such:=1"], "unknown controller parameter 'no_such'"),
                         (["-p", "seed:=-4"], "seed must be in"),
                         (["-p", "use_sim_time:=false"], "set by the replay itself"),
                         (["-p", "image_transport:=compressed"], "does not fit the bag"),
                         (["--start", "100"], "no recorded cycle between 100 s"),
                         (["--max-command-diff", "-1"], "tolerances must be >= 0"),
                         (["--timeout", "-1"], "--timeout must be >= 0 s"),
                         # NaN left no deadline (an audit: a hang, whatever --timeout said)
                         (["--cycle-timeout", "nan"], "--cycle-timeout must be a number of seconds > 0"),
                         (["--cycle-timeout", "-5"], "--cycle-timeout must be a number of seconds > 0"),
                         # a crawl waited out the whole timeout, then exit 3 (an adversarial audit)
                         (["--speed", "1e-9"], "s, more than the"),
                         (["--speed", "0.01", "--timeout", "60"], "more than the 60 s timeout (--timeout)")):
        assert main(["replay", str(BAG), "--out", str(tmp_path / "out"), *args]) == 2
        assert reason in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # a string of names was read as its letters (an adversarial audit)
    letters = rewrite(BAG, tmp_path / "letters", recorded=lambda document: document.update(unset="abc"))
    assert main(["replay", str(letters), "--out", str(tmp_path / "out")]) == 2
    assert "is not the recorder's JSON (unset is 'abc', not a list of names)" in capsys.readouterr().err
    edited = rewrite(BAG, tmp_path / "edited", parameters=lambda values: values.update(horizon="fifty"))
    assert main(["replay", str(edited), "--out", str(tmp_path / "out")]) == 2   # the bag's, said so
    assert "the bag's recorded controller parameters: horizon must be an int, got str 'fifty'" in capsys.readouterr().err
    afile = tmp_path / "a_file"
    afile.write_text("not a folder")
    assert main(["replay", str(BAG), "--out", str(afile)]) == 2      # was a traceback
    assert f"--out {str(afile)!r} is a file, not a folder" in capsys.readouterr().err
    # under a file, or a --json that cannot be written: a traceback and exit 1, the second after
    # the whole replay with its outputs half moved (an audit)
    assert main(["replay", str(BAG), "--out", str(afile / "sub")]) == 2
    assert f"{str(afile)!r} is a file, not a folder" in capsys.readouterr().err
    assert main(["replay", str(BAG), "--out", str(tmp_path / "out"), "--json", str(afile / "r.json")]) == 2
    assert "--json's folder" in capsys.readouterr().err
    assert main(["replay", str(BAG), "--out", str(tmp_path / "out"), "--json", str(tmp_path)]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # a folder that says it is writable and is not (/sys to root): exit 3 after reading the bag
    # (a README audit); here one nothing can be made in, as /sys refuses root
    if Path("/sys").is_dir():
        assert main(["replay", str(BAG), "--out", "/sys/grasp_ros_replay_probe"]) == 2
        assert "cannot write in '/sys'" in capsys.readouterr().err


def test_the_whole_replay_has_a_timeout_and_a_sigterm_ends_it_cleanly(tmp_path):
    """A bag asking hours of planning, or a controller that hangs starting, must not hold CI:
    --timeout bounds the whole replay, start-up included (exit 3, named). A CI job's SIGTERM ends it as Ctrl-C does: exit 130, no traceback, the controller
    stopped and no scratch folder left."""
    code, output, _ = replay(BAG, tmp_path / "short", "--timeout", "0.5")
    assert code == 3, output
    # the controller's start (importing torch alone takes longer) counts: a hung start-up too
    assert "the replay's timeout (0.5 s in all, --timeout) ran out while it waited for the controller's" \
        in output and "Traceback" not in output
    out = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, "-m", "grasp_ros.cli", "replay", str(BAG), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "controller active" in line:
            children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
            process.send_signal(signal.SIGTERM)
            break
    rest, _ = process.communicate(timeout=TIMEOUT)
    output = "".join(lines) + rest
    assert process.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    assert not list(out.glob(".replay-*"))
    assert children, "the controller process was not found"
    for child in map(int, children):       # the controller is stopped, not left running
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)


def test_the_launch_variant_starts_the_package_launch_file_with_the_replay_parameters(tmp_path, capsys):
    """--launch: ``ros2 launch grasp_ros grasp_controller.launch.py`` with the replay's parameter
    file, and the two values that launch file sets after the file (use_sim_time, autostart) given
    as the replay needs them; without a ROS 2 install that has the package, refused up front."""
    from grasp_ros.cli import main
    from grasp_ros.replay.driver import CONTROLLER_LAUNCH_FILE, controller_command
    from grasp_ros.replay.settings import FORCED
    from grasp_ros.ros.processes import launch_available

    command = controller_command(tmp_path / "c.yaml", dict(FORCED), launch=True)
    assert command[:4] == ["ros2", "launch", "grasp_ros", CONTROLLER_LAUNCH_FILE]
    assert {f"params_file:={tmp_path / 'c.yaml'}", "use_sim_time:=true", "autostart:=false",
            "node_name:=grasp_controller"} == set(command[4:])
    launch_file = Path(__file__).resolve().parents[1] / "launch" / CONTROLLER_LAUNCH_FILE
    declared = launch_file.read_text()
    assert all(f'("{arg.split(":=")[0]}"' in declared for arg in command[4:])   # its arguments
    plain = controller_command(tmp_path / "c.yaml", dict(FORCED))
    assert plain[1:] == ["-m", "grasp_ros.ros.controller_node", "--ros-args", "--params-file",
                         str(tmp_path / "c.yaml")]
    if launch_available(CONTROLLER_LAUNCH_FILE):
        pytest.skip("ros2 launch is installed here: the refusal below does not apply")
    out = tmp_path / "out"
    assert main(["replay", str(BAG), "--out", str(out), "--launch"]) == 2
    assert "--launch starts the controller with `ros2 launch grasp_ros" in capsys.readouterr().err
    assert not out.exists()


def test_settings_come_from_the_bag_then_a_params_file_then_the_command_line(tmp_path):
    from grasp_ros.replay import ReplayOptions, prepare

    params = tmp_path / "robot.yaml"
    params.write_text("/**:\n  ros__parameters:\n    seed: 3\n    planner:\n      chains: 8\n")
    prepared = prepare(ReplayOptions(bag=BAG, params_files=(params,), overrides={"seed": 5}))
    values, sources = prepared.values, prepared.sources
    assert (values["model"], sources["model"]) == ("learned", "recorded")
    assert (values["planner.chains"], sources["planner.chains"]) == (8, "params file")
    assert (values["seed"], sources["seed"]) == (5, "command line")
    assert values["timing"] == "fixed_iterations" and values["use_sim_time"] and not values["autostart"]
    assert prepared.iterations == "parameter"      # the recording ran fixed iterations itself
    # The shipped bag predates the wide routes, the searched sync and the adjoint gradient: it
    # replays without them.
    for name, legacy in (("planner.route_spread", 0.0), ("planner.sync_search", 0),
                         ("planner.sync_gradient", "backprop")):
        assert (values[name], sources[name]) == (legacy, "recorded (before the parameter existed)")
    from grasp_ros.replay.settings import controller_values
    now, _ = controller_values({"planner.route_spread": 2.0}, {}, {}, None)
    assert now["planner.route_spread"] == 2.0 and now["planner.sync_search"] == 0
    assert "planner.route_spread" not in controller_values(None, {}, {}, None)[0]   # no recorded parameters
    # declared without a value by the recorded controller: its default, not a legacy value
    assert "planner.route_spread" not in controller_values({}, {}, {}, None, ["planner.route_spread"])[0]
    # Several files, in order (as the node reads them); the robot's own values given again change
    # nothing: the recorded iteration counts stay (auto).
    robot = tmp_path / "robot_again.yaml"
    robot.write_text("/**:\n  ros__parameters:\n    seed: 4\n    timing: realtime\n    planner:\n      iterations: 20\n")
    prepared = prepare(ReplayOptions(bag=BAG, params_files=(params, robot)))
    assert prepared.values["seed"] == 4 and prepared.values["planner.chains"] == 8
    from grasp_ros.replay.settings import changed_values, iteration_mode
    recorded = dict(prepared.recording.parameters, timing="realtime")
    assert changed_values(recorded, {"planner.iterations": 20, "seed": 4}) == ["seed"]
    assert iteration_mode("auto", recorded, changed_values(recorded, {"planner.iterations": 20})) == "recorded"
    assert iteration_mode("auto", recorded, changed_values(recorded, {"planner.iterations": 5})) == "parameter"
    # `ros2 param dump` of a robot's controller also writes what rclpy declares on every node:
    # read without them (an audit: "unknown controller parameter", exit 2)
    dumped = tmp_path / "dumped.yaml"
    dumped.write_text("/grasp_controller:\n  ros__parameters:\n    seed: 6\n    start_type_description_service: true\n"
                      "    qos_overrides:\n      /image:\n        subscription:\n          depth: 5\n")
    from grasp_ros.replay.settings import read_params_file
    assert read_params_file(dumped) == {"seed": 6}


# -- the schedule, without ROS -------------------------------------------------------------

def _cycle(t: float, received: int, age: float) -> Cycle:
    nan = math.nan
    return Cycle(round(t * NS), received, 0, "OK", "grasp", 5, nan, nan, nan, nan, nan, age, 0.0, 0.0, np.zeros(2))


def test_a_cycle_gets_the_observation_its_recorded_age_names():
    """Receive times alone would give cycle 0 the frame stamped 0.1 s (the recorder got it
    before the clock message); its recorded age (0.05 s) says it used the one stamped 0.05 s."""
    frames = [Input("image", 100, round(0.05 * NS), b""), Input("image", 200, round(0.1 * NS), b"")]
    recording = Recording(Path("x"), "mcap", {}, frames, [_cycle(0.1, 400, 0.05), _cycle(0.2, 600, 0.1)],
                          np.asarray([[300, round(0.1 * NS)], [500, round(0.2 * NS)]], np.int64))
    bounds = boundaries(recording, ("image",))
    assert 100 < bounds[0] <= 200 < bounds[1]


def test_a_cycle_recorded_before_the_first_observation_gets_none():
    """A controller started with the recorder: the recorder got a frame before the first cycle,
    the controller did not (STALE, no observation yet: infinite age). The replay holds it back,
    and a replayed cycle that saw one anyway counts as an input mismatch."""
    frames = [Input("image", 100, round(0.05 * NS), b""), Input("image", 450, round(0.15 * NS), b"")]
    cycles = [_cycle(0.1, 400, math.inf), _cycle(0.2, 600, 0.05)]
    recording = Recording(Path("x"), "mcap", {}, frames, cycles,
                          np.asarray([[300, round(0.1 * NS)], [500, round(0.2 * NS)]], np.int64))
    bounds = boundaries(recording, ("image",))
    assert bounds[0] <= 100 < 450 < bounds[1]
    from grasp_ros.replay.compare import Tolerances, compare
    replayed = {i: dataclasses.replace(cycles[i], observation_age=0.05) for i in range(2)}
    saw_one = compare(cycles, [0, 1], replayed, Tolerances())
    assert saw_one.summary["input_mismatches"] == 1 and not saw_one.passed
    replayed[0].observation_age = math.inf
    assert compare(cycles, [0, 1], replayed, Tolerances()).summary["input_mismatches"] == 0


def test_another_observation_of_a_matched_frame_is_noted_by_its_novelty():
    """A frame of the recorded age paired with another joint_states sample (a live controller
    that dropped some of a 1 kHz joint_states): the age matches, but the recorded model scores
    another novelty. Noted (other CPU kernels would round it differently too); with a changed
    model, novelty differs anyway and says nothing."""
    from grasp_ros.replay.compare import Tolerances, compare
    cycles = [dataclasses.replace(_cycle(0.1 * (i + 1), 100 * i, 0.05), novelty=1.5) for i in range(3)]
    replayed = {i: dataclasses.replace(cycles[i]) for i in range(3)}
    replayed[2].novelty = 1.57
    noted = compare(cycles, [0, 1, 2], replayed, Tolerances(), same_model=True)
    (note,) = noted.summary["notes"]
    assert note.startswith("1 replayed cycle(s) with the recorded model scored another observation novelty")
    assert noted.passed and noted.summary["input_mismatches"] == 0
    assert compare(cycles, [0, 1, 2], replayed, Tolerances(), same_model=False).summary["notes"] == []


def test_the_controller_is_activated_on_a_grid_that_fires_at_every_cycle():
    period = 0.1
    # cycles late on their grid by up to 4 ms (a coarse /clock), the first one 3 ms late
    times = [round((1.0 + 0.1 * k) * NS) + late for k, late in enumerate((3e6, 0, 4e6, 1e6))]
    g = activation_clock(times, period)
    grid = g + round(period * NS)
    assert grid <= times[0]
    for k, t in enumerate(times):        # exactly one grid point in (previous, t]
        previous = times[k - 1] if k else g
        points = [grid + n * round(period * NS) for n in range(20)]
        assert sum(previous < p <= t for p in points) == 1
    with pytest.raises(ValueError, match="less than one period"):
        activation_clock([round(0.05 * NS)], period)


def test_a_recording_told_to_stop_ends_while_messages_keep_coming(monkeypatch):
    """After the stop the recorder takes what had arrived until it is idle; a topic flooded on
    past the stop kept it from ever being idle, and a SIGINT took 21 s, as long as the flood
    lasted (an adversarial audit; a supervisor's SIGKILL meanwhile would have lost the bag). Here
    a timer due at every spin stands for the flood: the drain ends after DRAIN_S all the same."""
    import threading
    import types
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    import grasp_ros.ros.recorder as recorder_module
    monkeypatch.setattr(recorder_module, "DRAIN_S", 0.3)
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("flood_stand_in", context=context)
    counted = types.SimpleNamespace(total=0, done=False)       # what _drain reads of a recorder
    node.create_timer(0.0, lambda: setattr(counted, "total", counted.total + 1))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    ended = threading.Event()
    drain = threading.Thread(target=lambda: (recorder_module._drain(executor, counted), ended.set()),
                             daemon=True)
    try:
        drain.start()
        drain.join(timeout=60.0)       # a bound for the test only: it ends within DRAIN_S
        assert ended.is_set(), "the drain went on while messages kept coming"
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert counted.total > 10


def test_publishers_of_another_type_joining_a_recorded_topic_are_said(tmp_path):
    """A peer's String on /mixed first: the topic is recorded as String. A publisher of Int32
    joining it later was neither recorded nor said (an adversarial audit: a String peer on image
    kept every camera frame out of the bag, "wrote" and exit 0)."""
    import threading
    import time
    import rclpy
    from rclpy.context import Context
    from std_msgs.msg import Int32, String
    from grasp_ros.ros.recorder import record_bag
    context, other = Context(), Context()
    rclpy.init(context=context)
    peer = rclpy.create_node("mixed_peer", context=context)
    first = peer.create_publisher(String, "/mixed", 10)
    lines: list[str] = []
    done = threading.Event()
    result: list = []
    recording = threading.Thread(target=lambda: result.append(record_bag(
        tmp_path / "bag", [("/mixed", None)], log=lines.append, controller=None, stop=done.is_set,
        duration=120.0)), daemon=True)
    recording.start()

    def until(condition, what: str) -> None:
        deadline = time.monotonic() + 60.0
        while not condition():
            assert time.monotonic() < deadline and recording.is_alive(), (what, lines)
            first.publish(String(data="peer"))
            time.sleep(0.05)
    try:
        until(lambda: any(line.startswith("recording /mixed") for line in lines), "the String recorded")
        # the real publisher joins (a participant of its own: one may not hold two types a topic)
        rclpy.init(context=other)
        real = rclpy.create_node("mixed_real", context=other)
        real.create_publisher(Int32, "/mixed", 10).publish(Int32(data=1))
        until(lambda: any("recorded as" in line for line in lines), "the Int32 publisher said")
    finally:
        done.set()
        recording.join(timeout=30)
        peer.destroy_node()
        rclpy.try_shutdown(context=context)
        rclpy.try_shutdown(context=other)
    said = [line for line in lines if "recorded as std_msgs/msg/String, but publishers of" in line]
    assert said and "std_msgs/msg/Int32" in said[0], lines
    assert "their messages are not recorded" in result[0].summary()


def test_the_recorder_says_the_messages_it_never_got(tmp_path):
    """Messages that never reached the recorder were not said at all (an adversarial audit: 19
    large frames sent to a best-effort reader, none recorded, "wrote" and exit 0). Here a reliable
    reader held up (not spun) while 300 messages come keeps the newest of its queue's 100: the gap
    in the publisher's numbering is said in the log, once, and in the summary."""
    import time
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosbags.rosbag2 import Writer
    from std_msgs.msg import Int32
    from grasp_ros.ros.recorder import DEPTH, BagRecorder, Recorded
    mine, theirs = Context(), Context()
    rclpy.init(context=mine)
    rclpy.init(context=theirs)
    lines: list[str] = []
    try:
        node = rclpy.create_node("lossy_recorder", context=mine)
        executor = SingleThreadedExecutor(context=mine)
        executor.add_node(node)
        sender = rclpy.create_node("lossy_sender", context=theirs)
        publisher = sender.create_publisher(Int32, "/lossy", QoSProfile(
            depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        with Writer(tmp_path / "bag", version=9) as writer:
            recorder = BagRecorder(node, writer, [("/lossy", "std_msgs/msg/Int32")], log=lines.append)
            entry = recorder.recorded["/lossy"]

            def spin_until(condition, what: str) -> None:
                deadline = time.monotonic() + 60.0
                while not condition():
                    assert time.monotonic() < deadline, (what, lines)
                    executor.spin_once(timeout_sec=0.05)
            spin_until(lambda: publisher.get_subscription_count() > 0, "matched")
            publisher.publish(Int32(data=0))
            spin_until(lambda: entry.count == 1, "the first message")
            for k in range(1, 301):
                publisher.publish(Int32(data=k))
            time.sleep(1.0)     # they reach the reader's queue; only its newest DEPTH stay
            spin_until(lambda: entry.delivery.lost_in_all()[1] == 301, "the last message")
            recorder.discover()
            recorder.discover()
    finally:
        rclpy.try_shutdown(context=mine)
        rclpy.try_shutdown(context=theirs)
    missed, published = entry.delivery.lost_in_all()
    assert missed == published - entry.count and missed >= 300 - DEPTH, (missed, entry.count)
    said = [line for line in lines if "never reached the recorder" in line]
    assert len(said) == 1 and "recorder's queue" in said[0], lines
    assert f"{missed} of the 301 messages published after its first never arrived" in recorder.summary()
    silent = Recorded("/camera", "sensor_msgs/msg/Image", False, False, publishers_seen=True)
    assert "no message arrived" in silent.loss()
    quiet = Recorded("/late_plans", "grasp_ros/msg/PlanDiagnostics", True, False, publishers_seen=True)
    assert quiet.loss() == ""       # a reliable reader's silence is a publisher that sent nothing
    assert Recorded("/camera", "sensor_msgs/msg/Image", False, False).loss() == ""
