"""World-model accuracy against rollout length, on held-out simulator episodes.

For every window of k steps of fresh exploration data (a seed the training data never used), the
model encodes the first frame, predicts k steps open loop from the recorded actions, and is
compared with the encodings of the true frames (latent MSE per dimension) and with the true
positions (decoded position error). Rows are BENCH_FORMAT "model_accuracy" rows.
"""
from __future__ import annotations

import dataclasses

import torch

from ..data import TransitionWindows
from ..data.exploration import collect_episodes
from ..sim import make_env
from ..models import load_world_model
from ..training.trainer import TrainSettings, evaluate

HELD_OUT_SEED = 10_000


def measure(model_name: str = "learned", env: str = "wall_door", steps: int = 30,
            episodes: int = 40, seed: int = HELD_OUT_SEED) -> list[dict]:
    model = load_world_model({"name": model_name, "env": env})
    data = collect_episodes(make_env(env), episodes=episodes, steps=steps + 2, seed=seed, progress=False)
    windows = TransitionWindows(data, steps)
    settings = dataclasses.replace(TrainSettings(), rollout_steps=steps, segment_steps=steps + 2)
    metrics = evaluate(model, windows, settings, torch.arange(len(windows)), torch.device("cpu"))
    return [{"bench": "model_accuracy", "model": model_name, "env": env, "rollout_steps": k + 1,
             "latent_mse": mse, "position_err": err, "windows": len(windows)}
            for k, (mse, err) in enumerate(zip(metrics["latent_mse"], metrics["position_err"]))]
