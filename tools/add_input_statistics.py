#!/usr/bin/env python3
"""Add novelty statistics (``input_statistics``) to a learned-model checkpoint that has none.

Collects fresh exploration episodes from the checkpoint's own simulator and time step
(``grasp_ros.data.collect_episodes``), encodes every frame with the model, and writes the
checkpoint back with the ``input_statistics`` key added; every other entry, weights included,
is kept as it was (checked after writing). What ``grasp-ros train`` stores at the end of
training, for checkpoints trained before it did:

    python tools/add_input_statistics.py grasp_ros/assets/wall_door_latent.pt --episodes 300 --seed 1
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from grasp_ros.data import collect_episodes  # noqa: E402
from grasp_ros.sim import make_env  # noqa: E402
from grasp_ros.models.learned import load_latent_model  # noqa: E402
from grasp_ros.training import input_statistics  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="learned-model checkpoint (.pt), rewritten in place")
    parser.add_argument("--episodes", type=int, default=300, help="exploration episodes to collect")
    parser.add_argument("--steps", type=int, default=24, help="steps per episode")
    parser.add_argument("--seed", type=int, default=1, help="seed of the episodes (the training data used 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = load_latent_model(args.checkpoint)
    if not model.env or not model.horizon:
        parser.error(f"{args.checkpoint}: the checkpoint names no simulator and horizon to collect from")
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    data = collect_episodes(make_env(model.env, model.horizon, image_size=model.image_size),
                            args.episodes, args.steps, args.seed, progress=False)
    frames = data.episodes * (data.steps + 1)
    statistics = input_statistics(model, data, frames, args.seed)
    checkpoint["input_statistics"] = statistics.to_dict()

    tmp = f"{args.checkpoint}.tmp{os.getpid()}"
    torch.save(checkpoint, tmp)
    written = torch.load(tmp, map_location="cpu", weights_only=True)
    same = written.keys() == checkpoint.keys() and all(
        torch.equal(written["state_dict"][k], v) for k, v in checkpoint["state_dict"].items())
    if not same:
        os.remove(tmp)
        print(f"{args.checkpoint}: the rewritten file does not hold the same weights; left unchanged", file=sys.stderr)
        return 1
    os.replace(tmp, args.checkpoint)
    print(f"{args.checkpoint}: input_statistics of {statistics.samples} frames ({data.episodes} episodes x "
          f"{data.steps + 1} frames, {model.env}, horizon {model.horizon}, seed {args.seed}) added; "
          f"{os.path.getsize(args.checkpoint) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
