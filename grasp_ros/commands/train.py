"""``grasp-ros train``: train the latent world model on a dataset from ``grasp-ros collect``.

    grasp-ros train --data data.npz --out grasp_ros/assets/wall_door_latent.pt --epochs 12 --seed 0
    grasp-ros train --data data.npz --out model.pt --resume          # continue an interrupted run
    grasp-ros train --data data.npz --out model.pt --export model.ts  # also write TorchScript
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from ._paths import unwritable

THREADS = (0, 1024)
"""Bounds of --threads (torch refused -1 with a traceback)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..training import TrainSettings

    defaults = TrainSettings()
    parser.add_argument("--data", required=True, help="dataset file (.npz or .pt) from grasp-ros collect")
    parser.add_argument("--out", required=True, help="checkpoint to write after every epoch (.pt)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint at --out (its model and settings; --epochs may grow)")
    parser.add_argument("--export", default=None, help="also write a TorchScript module here (.ts)")
    parser.add_argument("--threads", type=int, default=0,
                        help=f"torch CPU threads, {THREADS[0]} to {THREADS[1]}; 0 (default): the cores not "
                             "already busy, at least 1 (torch's thread pool stalls badly when it shares the cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model")
    model.add_argument("--latent-dim", type=int, default=32, help="D, the latent size")
    model.add_argument("--hidden", type=int, default=128, help="width of the MLPs (at least 1)")
    model.add_argument("--channels", type=int, nargs=3, default=[16, 16, 16], help="conv channels (each at least 1)")
    model.add_argument("--use-joints", action="store_true", help="also feed the joint vector to the encoder")
    model.add_argument("--frames", type=int, default=1,
                       help="K: the encoder sees the last K camera frames (K > 1 lets it see motion)")
    train = parser.add_argument_group("training (see grasp_ros.training.TrainSettings)")
    for f in dataclasses.fields(TrainSettings):
        train.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(defaults, f.name)), default=None,
                           help=f"default: {getattr(defaults, f.name)}")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data import DatasetError, dataset_summary, load_dataset
    from ..models import WorldModelError
    from ..training import TrainSettings, export_torchscript, resolve_device, train

    problem = _refused(args)
    if problem:
        print(f"grasp-ros train: {problem}", file=sys.stderr)
        return 2
    threads = args.threads or free_cores()
    torch.set_num_threads(threads)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainSettings)
             if getattr(args, f.name) is not None}
    try:
        resume = _read_resume(args.out) if args.resume else None
        settings = TrainSettings(**{**(resume["settings"] if resume else {}), **given})
        settings.validate()   # before the data loads: a bad option costs no minutes
        resolve_device(settings.device)
        data = load_dataset(args.data)
    except (DatasetError, WorldModelError, ValueError) as exc:
        print(f"grasp-ros train: {exc}", file=sys.stderr)
        return 2
    print(f"data {args.data}: {dataset_summary(data)}; {threads} torch thread(s)")
    options = {"latent_dim": args.latent_dim, "hidden": args.hidden, "channels": args.channels,
               "joint_dim": data.joint_dim if args.use_joints else 0, "frames": args.frames}
    started = time.perf_counter()
    try:
        result = train(data, args.out, settings, options, resume, progress=not args.quiet)
    except DatasetError as exc:
        print(f"grasp-ros train: dataset {args.data!r}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"grasp-ros train: {exc}", file=sys.stderr)
        return 2
    size = os.path.getsize(args.out) / 1e6
    print(f"wrote {args.out} ({size:.2f} MB) after {time.perf_counter() - started:.0f} s "
          f"({result['train_seconds']:.0f} s training)")
    if args.export:
        export_torchscript(result["model"], args.export)
        gap = _export_gap(result["model"], args.export, data)
        print(f"wrote {args.export}; loads with load_world_model({args.export!r}); "
              f"max |difference| to the checkpoint on a few frames: {gap:.2e}")
    return 0


def _refused(args: argparse.Namespace) -> str | None:
    """Why the options cannot train, or None: checked before the data loads, as the files to write.
    The model's own bounds on its sizes (0 hidden units trained an encoder that ignores its input,
    200,000 asked for 160 GB)."""
    from ..models.learned import MAX_WIDTH

    for option, value, (low, high) in (("--threads", [args.threads], THREADS),
                                       ("--hidden", [args.hidden], (1, MAX_WIDTH)),
                                       ("--channels", args.channels, (1, MAX_WIDTH))):
        if not all(low <= v <= high for v in value):
            return f"{option} must be in [{low}, {high}], got {' '.join(map(str, value))}"
    same = os.path.realpath(args.out)
    if args.export is not None and os.path.realpath(args.export) == same:
        return f"--export {args.export!r} would overwrite the checkpoint --out"
    if os.path.realpath(args.data) == same:
        return f"--out {args.out!r} would overwrite the dataset --data"
    return unwritable(args.out, (".pt",)) or (unwritable(args.export, (".ts",), "--export") if args.export else None)


def free_cores() -> int:
    """Cores not busy with other work right now (1-minute load average), at least 1."""
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:        # no load average on this platform
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


def _read_resume(path: str) -> dict:
    from ..models import WorldModelError
    from ..models.archive import load_checked
    from ..models.learned import load_latent_model
    from ..models.text import shorten
    from ..training import TrainSettings

    load_latent_model(path)   # checks the file; raises WorldModelError with the reason
    checkpoint = load_checked(path)
    missing = [k for k in ("optimizer", "scheduler", "settings", "history", "epoch") if k not in checkpoint]
    if missing:
        raise WorldModelError(f"{path!r}: cannot resume, the checkpoint lacks {missing}")
    try:
        TrainSettings(**checkpoint["settings"]).validate()
    except (TypeError, ValueError) as exc:
        raise WorldModelError(f"{path!r}: cannot resume, its settings are not TrainSettings "
                              f"({shorten(exc)})") from exc
    return checkpoint


def _export_gap(model, path: str, data) -> float:
    """Largest difference between the exported module and ``model`` on a few frames."""
    import torch

    from ..models import load_world_model

    exported = load_world_model(path)
    first = torch.from_numpy(data.images[:4, 0])
    K = model.image_frames
    obs = {"image": first if K == 1 else first[:, None].expand(-1, K, -1, -1, -1).contiguous()}
    if model.joint_dim:
        obs["joints"] = torch.from_numpy(data.joints[:4, 0, : model.joint_dim])
    with torch.no_grad():
        z = model.encode(obs)
        a = torch.from_numpy(data.actions[:4, 0])
        gaps = [(exported.encode(obs) - z).abs().max(), (exported.predict(z, a) - model.predict(z, a)).abs().max(),
                (exported.position(z) - model.position(z)).abs().max()]
    return float(max(gaps))
