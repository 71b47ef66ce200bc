"""A learned checkpoint's accuracy against open-loop rollout length, on a held-out dataset file.

``grasp-ros bench-model`` draws its held-out episodes from the 2-D simulators; a robot's model is
measured here on a dataset of its own (``grasp-ros collect --rosbag`` of a recording the model
never saw):

    python -m grasp_ros.bench.dataset_accuracy --checkpoint grasp_ros/assets/arm_latent.pt \\
        --data heldout.npz --steps 20 --out docs/benchmarks/arm_model

Every window of ``steps`` transitions (each start of each episode) is encoded at its first frame
and rolled out open loop with the recorded actions. After k steps the prediction is compared
with the encoding of the true frame (latent MSE per dimension) and, decoded by the state head,
with the true joint positions (``position_err``: Euclidean norm over the position columns, the
dataset's ``joint_fields`` say which; per joint too). Two baselines that need no model put the
numbers in scale: ``hold`` predicts that the joints stay where they were (its error is the
distance the joints moved in k steps) and ``constant_velocity`` extrapolates the measured joint
velocities (when the data has them). Rows are "model_accuracy" rows (docs/benchmarks/FORMAT.md), k = 0 the
encoder alone.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..data import TransitionWindows, load_dataset
from ..data.dataset import TransitionData
from ..models.card import ModelCard
from ..models.learned import LatentWorldModel, load_latent_model
from ..training.trainer import measured_position_columns, normalised_actions
from ..process_exit import leave


def measure(model: LatentWorldModel, data: TransitionData, steps: int, period: float,
            batch: int = 256) -> list[dict]:
    """Rows for k = 0..``steps`` (see the module doc). ``data``'s actions in robot units."""
    normalised = normalised_actions(data, ModelCard.from_dict(json.loads(model.card_json)))
    windows = TransitionWindows(normalised, steps)
    pos = measured_position_columns(data.meta, data.joint_dim)
    fields = list(data.meta.get("joint_fields") or ("position",))
    vel = ([c - fields.index("position") + fields.index("velocity") for c in pos]
           if "velocity" in fields and "position" in fields else None)
    with torch.no_grad():
        latents = encode_frames(model, normalised, batch)                     # [N, T+1, D], once
        sums: dict[str, np.ndarray] = {}
        for start in range(0, len(windows), batch):
            episode, frame = windows.frame_index(torch.arange(start, min(start + batch, len(windows))))
            z, joints = latents[episode, frame], windows.joints[episode, frame]   # [B, steps+1, .]
            zhat = model.serial_rollout(z[:, 0], windows.actions[episode, frame[:, :-1]])   # first: z0
            q = joints[..., pos]                                              # [B, steps+1, P]
            err = model.decode_state(zhat)[..., pos] - q                      # k = 0: the encoder
            parts = {"latent_mse": (zhat - z).pow(2).mean(-1), "position_err": err.norm(dim=-1),
                     "joint_abs_err": err.abs(), "hold_err": (q - q[:, :1]).norm(dim=-1),
                     "step_motion": (q[:, 1:] - q[:, :-1]).norm(dim=-1)}
            if vel is not None:
                k = torch.arange(steps + 1, dtype=q.dtype).view(1, -1, 1)
                guess = q[:, :1] + k * period * joints[:, :1, vel]
                parts["constant_velocity_err"] = (guess - q).norm(dim=-1)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0) + value.sum(0).numpy()
    n = len(windows)
    mean = {k: v / n for k, v in sums.items()}
    motion = float(mean["step_motion"].mean())
    names = list(data.meta.get("joint_names") or [f"j{i}" for i in range(len(pos))])
    rows = []
    for k in range(steps + 1):
        row = {"bench": "model_accuracy", "rollout_steps": k, "latent_mse": float(mean["latent_mse"][k]),
               "position_err": float(mean["position_err"][k]),
               "position_err_per_joint": {name: float(e) for name, e in zip(names, mean["joint_abs_err"][k])},
               "hold_err": float(mean["hold_err"][k]), "motion_per_step": motion, "windows": n}
        if "constant_velocity_err" in mean:
            row["constant_velocity_err"] = float(mean["constant_velocity_err"][k])
        rows.append(row)
    return rows


def encode_frames(model: LatentWorldModel, data: TransitionData, batch: int = 256) -> torch.Tensor:
    """Latents [N, T+1, D] of every frame of ``data`` (with the frames before it where the model
    stacks several, and its joints where the model encodes them)."""
    windows = TransitionWindows(data, 1, history=model.image_frames)   # for its frame stacking
    T1 = data.steps + 1
    joints = torch.from_numpy(data.joints).flatten(0, 1)[:, : model.joint_dim]
    out = []
    for chunk in torch.arange(data.episodes * T1).split(batch):
        obs = {"image": windows.stacked_images(chunk // T1, chunk % T1)}
        if model.joint_dim:
            obs["joints"] = joints[chunk]
        out.append(model.encode(obs))
    return torch.cat(out).view(data.episodes, T1, -1)


def plot(rows: list[dict], path: Path) -> Path:
    """Position error (with the baselines) and latent MSE against k, one line per model."""
    from .plots import plt, save_figure

    models = list(dict.fromkeys(r["model"] for r in rows))
    first = [r for r in rows if r["model"] == models[0]]
    k = [r["rollout_steps"] for r in first]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10.5, 4))
    for i, name in enumerate(models):
        own = [r for r in rows if r["model"] == name]
        a.plot(k, [r["position_err"] for r in own], "o-", ms=3, lw=2 if i == 0 else 1.2, label=name)
        b.plot(k[1:], [r["latent_mse"] for r in own[1:]], "o-", ms=3, lw=2 if i == 0 else 1.2, label=name)
    a.plot(k[1:], [r["hold_err"] for r in first[1:]], "s--", ms=3, color="grey", label="hold (= motion in k steps)")
    if "constant_velocity_err" in first[0]:
        a.plot(k[1:], [r["constant_velocity_err"] for r in first[1:]], "^:", ms=3, color="black",
               label="constant velocity")
    a.axhline(first[0]["motion_per_step"], ls=":", color="red", label="mean motion per step")
    a.set(xlabel="open-loop rollout steps k", ylabel="joint position error (rad, norm over joints)",
          title="joint positions, held-out episodes", yscale="log")
    b.set(xlabel="open-loop rollout steps k", ylabel="latent MSE (per dim)", title="latent error")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def main(argv: Optional[list[str]] = None) -> int:
    from .results import machine_info, markdown_table, write_bench_json

    parser = argparse.ArgumentParser(prog="python -m grasp_ros.bench.dataset_accuracy",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, nargs="+", help="learned model checkpoints (.pt)")
    parser.add_argument("--data", required=True, help="held-out dataset (.npz/.pt), robot units as collected")
    parser.add_argument("--steps", type=int, default=20, help="longest open-loop rollout (default: 20)")
    parser.add_argument("--out", type=Path, default=Path("bench_out/dataset_accuracy"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    machine = machine_info()
    data = load_dataset(args.data)
    if args.steps > data.steps:
        print(f"--steps {args.steps}: the episodes have {data.steps} steps", file=sys.stderr)
        return 2
    rows = []
    for checkpoint in args.checkpoint:
        model = load_latent_model(checkpoint)
        card = ModelCard.from_dict(json.loads(model.card_json))
        started = time.perf_counter()
        own = measure(model, data, args.steps, card.period or float(data.meta.get("period") or 0.0))
        name = Path(checkpoint).name
        for r in own:
            r.update(model=name, data=str(data.meta.get("source", args.data)), period_s=card.period)
        rows += own
        shown = [r for r in own if r["rollout_steps"] in (0, 1, 2, 5, 10, 15, 20, args.steps)]
        print(f"{name} on {data.episodes} held-out episodes x {data.steps} steps, {own[0]['windows']} windows "
              f"of {args.steps} steps ({time.perf_counter() - started:.1f} s); mean joint motion per step "
              f"{own[0]['motion_per_step']:.4f} rad\n")
        print(markdown_table(shown, [("rollout_steps", "k"), ("position_err", "position error (rad)", ".4f"),
                                     ("hold_err", "hold baseline (rad)", ".4f"),
                                     ("constant_velocity_err", "constant velocity (rad)", ".4f"),
                                     ("latent_mse", "latent MSE", ".2e")]) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    path = write_bench_json(args.out / "model_accuracy.json", rows, machine)
    png = plot(rows, args.out / "model_accuracy.png")
    print(f"wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    leave(main())
