"""The user journey in miniature, end to end, as a user runs it (README, "Bring your own robot"):
the arm sim explores by itself, ``grasp-ros record`` records it, ``grasp-ros collect`` makes a
dataset of camera + joints (positions and velocities), ``grasp-ros train --use-joints`` trains a
tiny model, ``grasp-ros info`` shows its card, and the controller runs that checkpoint in closed
loop with the arm sim.

Every step is a separate process, as typed at a terminal. Sizes are tiny (a hundred frames, one
epoch, a 8-D latent): the test checks that the pieces fit together, not that the model is good.
The recording runs at rate_factor 1 (the bag's receive times set the model's period); the closed
loop runs in lock-step with a fixed iteration count, so its result does not depend on CPU speed.
Timeouts only catch hangs; nothing asserts on wall-clock time.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not importable", exc_type=ImportError)
pytest.importorskip("grasp_ros.sim.arm", reason="the arm needs MuJoCo")   # picks its GL backend first

from grasp_ros.commands._bench_common import card_rate  # noqa: E402
from grasp_ros.models.card import ModelCard  # noqa: E402
from grasp_ros.msg import PlanDiagnostics  # noqa: E402
from grasp_ros.sim.closed_loop import LoopSpec, run_closed_loop  # noqa: E402

JOINTS = ["joint1", "joint2", "joint3"]
MESSAGES = 330          # ~110 camera frames, joint states and commands each: ~11 s at 10 Hz
EPISODE_STEPS = 8
CYCLES = 30
HANG_S = 240            # per command: only a hang reaches it
TINY_RECIPE = ["--threads", "1", "--quiet", "--epochs", "1", "--batch-size", "4", "--segment-steps", "8",
               "--rollout-steps", "4", "--dynamics-steps", "20", "--dynamics-batch-size", "4",
               "--statistics-frames", "0", "--val-windows", "8",
               "--latent-dim", "8", "--hidden", "32", "--channels", "4", "4", "4"]


def grasp_ros(*args: str) -> subprocess.CompletedProcess:
    """``grasp-ros ARGS...`` in a process of its own; fails the test with its output if it fails."""
    result = subprocess.run([sys.executable, "-m", "grasp_ros.cli", *args], capture_output=True,
                            text=True, timeout=HANG_S)
    assert result.returncode == 0, (f"grasp-ros {' '.join(args)} exited {result.returncode}:\n"
                                    + result.stdout[-3000:] + result.stderr[-3000:])
    return result


def record_exploring_arm(bag) -> str:
    """The arm sim exploring by itself (its own process), recorded by ``grasp-ros record``."""
    sim = subprocess.Popen([sys.executable, "-m", "grasp_ros.sim.node", "--ros-args",
                            "-p", "env:=arm", "-p", "explore:=true"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        recorded = grasp_ros("record", str(bag), "--topics", "image", "joint_states", "command",
                             "/grasp_sim/episode", "--messages", str(MESSAGES))
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            log, _ = sim.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            sim.kill()
            log, _ = sim.communicate()
    assert sim.returncode == 0, f"the sim exited {sim.returncode}:\n{log[-3000:]}"
    return recorded.stdout


def test_bag_to_dataset_to_model_to_controller_on_the_arm(tmp_path):
    bag, data, model = tmp_path / "arm_bag", tmp_path / "arm.npz", tmp_path / "arm.pt"

    # 1. record
    summary = record_exploring_arm(bag)
    assert f"{MESSAGES} messages" in summary and (bag / "metadata.yaml").is_file(), summary

    # 2. dataset: camera + joint positions and velocities, cut into episodes
    collected = grasp_ros("collect", "--rosbag", str(bag), "--joint-fields", "position,velocity",
                          "--episode-steps", str(EPISODE_STEPS), "--out", str(data), "--quiet").stdout
    assert ("joints ['joint1.position', 'joint1.velocity', 'joint2.position', 'joint2.velocity', "
            "'joint3.position', 'joint3.velocity']") in collected, collected
    assert f"x {EPISODE_STEPS} steps" in collected and "J=6, A=3" in collected, collected

    # 3. train a tiny camera + joints model
    grasp_ros("train", "--data", str(data), "--out", str(model), "--use-joints", *TINY_RECIPE)

    # 4. the card: what the controller will subscribe to, and the robot's units
    info = grasp_ros("info", str(model)).stdout
    assert "joints: ['joint1', 'joint2', 'joint3'] x ['position', 'velocity'] on 'joint_states'" in info, info
    assert "source: rosbag:arm_bag" in info, info
    card = json.loads(grasp_ros("info", str(model), "--json").stdout)
    assert card["image"]["topic"] == "image" and card["joints"]["names"] == JOINTS
    low, high = np.asarray(card["actions"]["low"]), np.asarray(card["actions"]["high"])
    assert len(low) == 3 and np.all(low < high)
    assert card["period"] > 0, "the card does not know the period"

    # 5. the controller runs the checkpoint against the arm sim, in lock-step
    rate = card_rate(ModelCard.from_dict(card), 0.0)   # the card's period, measured from the bag
    spec = LoopSpec(env="arm", model="learned", checkpoint=model, observation="image+joints",
                    rate_hz=rate, horizon=8, episodes=0, min_cycles=CYCLES, max_episode_time=3.5,
                    lockstep=True, controller_params={"planner.iterations": 4},
                    log_dir=tmp_path / "loop", timeout=HANG_S)
    subscribers: dict[str, set] = {"/image": set(), "/joint_states": set()}

    def watch_graph(processes, watcher) -> bool:
        for topic, names in subscribers.items():
            if "grasp_controller" not in names:
                names.update(i.node_name for i in watcher.get_subscriptions_info_by_topic(topic))
        return False

    result = run_closed_loop(spec, progress=None, monitor=watch_graph)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in result.logs.values())
    assert result.ok, f"{result.reason}\n{logs}"
    assert all("grasp_controller" in names for names in subscribers.values()), subscribers

    cycles = [d for d in result.diagnostics if d["status"] != PlanDiagnostics.STATUS_INACTIVE]
    planned = [d for d in cycles if d["status"] == PlanDiagnostics.STATUS_OK]
    assert len(cycles) >= CYCLES and len(planned) >= CYCLES // 2, \
        f"{len(planned)} OK of {len(cycles)} cycles: {[d['status_text'] for d in cycles]}\n{logs}"
    sent = np.asarray(result.commands)
    assert sent.ndim == 2 and sent.shape[1] == 3 and len(sent) >= len(planned)
    assert np.all(sent >= low - 1e-9) and np.all(sent <= high + 1e-9), "commands beyond the card's bounds"
    assert all(len(d["command"]) == 3 for d in cycles)
    assert {d["command"] for d in planned} <= set(map(tuple, sent)), "a planned command never arrived"
    assert np.abs(sent).max() > 0.0, "every command was zero"

    assert result.joint_names == JOINTS
    first = result.samples[result.samples[:, 0] == 0][:, 2:5]   # episode 0's joint positions
    assert len(first) > CYCLES // 2
    assert np.abs(first - first[0]).max() > 0.05, "the arm did not move"
