"""``grasp-ros collect``: record a transitions dataset from a simulator or from a rosbag2.

    grasp-ros collect --env wall_door --episodes 300 --steps 32 --seed 0 --out data.npz
    grasp-ros collect --rosbag my_bag/ --image-topic /camera/image --joint-topic /joint_states \\
        --command-topic /command --out robot.npz
"""
from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="dataset file to write (.npz, or .pt)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    sim = parser.add_argument_group("from a simulator (exploration policy)")
    sim.add_argument("--env", default="wall_door", help="simulator layout (default: wall_door)")
    sim.add_argument("--horizon", type=int, default=None,
                     help="time resolution: the planning horizon whose step size to record (default: 50)")
    sim.add_argument("--episodes", type=int, default=300, help="episodes, each from a random free position")
    sim.add_argument("--steps", type=int, default=32, help="steps per episode")
    sim.add_argument("--seed", type=int, default=0, help="seed of positions and actions")
    sim.add_argument("--image-size", type=int, default=64, help="camera image side in pixels")
    sim.add_argument("--smoothing", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                     help="range of the per-episode action correlation rho, inside [0, 1) (default: 0.7 0.98)")
    sim.add_argument("--scale", type=float, default=None, help="action noise scale sigma")
    bag = parser.add_argument_group("from a rosbag2 (instead of a simulator)")
    bag.add_argument("--rosbag", default=None, help="rosbag2 folder to read")
    bag.add_argument("--image-topic", default="image", help="sensor_msgs/Image or CompressedImage topic")
    bag.add_argument("--joint-topic", default="joint_states", help="sensor_msgs/JointState topic")
    bag.add_argument("--command-topic", default="command",
                     help="Float64MultiArray / Float32MultiArray / Twist / TwistStamped topic")
    bag.add_argument("--joint-names", nargs="*", default=None, help="joints to keep, in this order")
    bag.add_argument("--align", choices=("end", "mean"), default="end",
                     help="command of a frame step: the one held at the next frame (end) or its time average (mean)")


def run(args: argparse.Namespace) -> int:
    from ..data import DatasetError, dataset_summary, save_dataset

    started = time.perf_counter()
    try:
        data = _from_rosbag(args) if args.rosbag else _from_simulator(args)
        save_dataset(data, args.out)
    except (DatasetError, ValueError) as exc:
        print(f"grasp-ros collect: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {dataset_summary(data)} in {time.perf_counter() - started:.1f} s")
    return 0


def _from_simulator(args):
    import torch

    from ..data import ExplorationSettings, collect_episodes
    from ..sim import NOMINAL_HORIZON, make_env

    # One step of the simulator is a handful of tiny tensor ops; intra-op threads only add
    # synchronisation (on a busy 2-core machine, 50x slower).
    torch.set_num_threads(1)
    env = make_env(args.env, args.horizon or NOMINAL_HORIZON, image_size=args.image_size)
    defaults = ExplorationSettings()
    settings = ExplorationSettings(smoothing=defaults.smoothing if args.smoothing is None else tuple(args.smoothing),
                                   scale=defaults.scale if args.scale is None else args.scale)
    return collect_episodes(env, args.episodes, args.steps, args.seed, settings, progress=not args.quiet)


def _from_rosbag(args):
    from ..data.rosbag import read_rosbag

    return read_rosbag(args.rosbag, args.image_topic, args.joint_topic, args.command_topic,
                       image_size=args.image_size, joint_names=args.joint_names, align=args.align,
                       progress=not args.quiet)
