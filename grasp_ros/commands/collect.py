"""``grasp-ros collect``: record a transitions dataset from a simulator or from a rosbag2.

    grasp-ros collect --env wall_door --episodes 300 --steps 32 --seed 0 --out data.npz
    grasp-ros collect --rosbag my_bag/ --image-topic /camera/image --joint-topic /joint_states \\
        --command-topic /command --out robot.npz
    grasp-ros collect --rosbag bags/ run7.mcap --episode-steps 48 --joint-fields position,velocity \\
        --command-topic /cmd_vel --twist-fields linear.x,angular.z --out robot.npz

Several bags, or folders of bags, make one dataset; each bag is cut into episodes at pauses,
resets and episode reports, then into episodes of --episode-steps (grasp_ros.data.rosbag).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from ._paths import unwritable



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
    sim.add_argument("--image-size", type=int, default=64,
                     help="camera image side in pixels, at least 16 (a bag's frames: 1) and at most a "
                          "learned model's input; also the side a bag's frames are resized to")
    sim.add_argument("--smoothing", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                     help="range of the per-episode action correlation rho, inside [0, 1) (default: 0.7 0.98)")
    sim.add_argument("--scale", type=float, default=None, help="action noise scale sigma")
    bag = parser.add_argument_group("from a rosbag2 (instead of a simulator)")
    bag.add_argument("--rosbag", nargs="+", default=None, metavar="BAG",
                     help="rosbag2 folders, .mcap/.db3 files, or folders holding bags")
    bag.add_argument("--image-topic", default="image", help="sensor_msgs/Image or CompressedImage topic")
    bag.add_argument("--joint-topic", default="joint_states", help="sensor_msgs/JointState topic")
    bag.add_argument("--command-topic", default="command",
                     help="Float64MultiArray / Float32MultiArray / Twist / TwistStamped topic, or a "
                          "JointTrajectory one driving joints by velocity (actions: its first point's velocities)")
    bag.add_argument("--crop", choices=("center", "stretch"), default="center",
                     help="a frame of another aspect: its middle square (center), or all of it resized "
                          "(stretch); the card keeps it, so the controller prepares frames the same way")
    bag.add_argument("--joint-names", nargs="*", default=None,
                     help="joints to keep, in this order (separated by spaces or commas)")
    bag.add_argument("--joint-fields", type=_names, default=("position",),
                     help="JointState fields per joint, comma-separated: position, velocity "
                          "(default: position)")
    bag.add_argument("--twist-fields", type=_twist_fields, default="auto",
                     help="Twist commands: fields kept as actions, e.g. linear.x,angular.z (default: "
                          "auto, those of linear.x, linear.y, angular.z not zero throughout)")
    bag.add_argument("--episode-steps", type=int, default=32,
                     help="steps per episode; pieces are cut into these, leftovers dropped "
                          "(default: 32; 0: each piece whole, all must be equally long)")
    bag.add_argument("--gap", type=float, default=None, metavar="SECONDS",
                     help="cut where frames, joint states or commands pause longer than this "
                          "(default: 5 periods of the slowest topic; inf: never)")
    bag.add_argument("--reset-jump", type=_reset_jump_arg, default=None, metavar="LIMIT|JOINT=LIMIT,...",
                     help="cut where a joint position jumps more than this between frames, in the "
                          "joint's units: one limit for every joint, or one per joint by name "
                          "(shoulder=0.4,gripper=0.02: joints in m and rad need their own; joints not "
                          "named are not cut) (default: off)")
    bag.add_argument("--continuous-joints", type=_names, default=(),
                     help="joints whose position is an angle wrapping at +-pi (a base's yaw), comma-"
                          "separated: cut where they wrap, and named in the model card (the controller "
                          "then takes a goal on them at its nearest turn)")
    bag.add_argument("--episode-topic", default="/grasp_sim/episode",
                     help="cut at every message on this topic, of any type, when the bag has it "
                          "(default: /grasp_sim/episode, the built-in sim's; '': ignore)")
    bag.add_argument("--align", choices=("end", "mean"), default="end",
                     help="command of a frame step: the one held at the next frame (end) or its time average (mean)")
    bag.add_argument("--period", type=float, default=None, metavar="SECONDS",
                     help="the robot's control period, written as the dataset's (and model card's) period "
                          "(default: the median frame period of the camera's header stamps, or of the "
                          "receive stamps where it has none)")
    bag.add_argument("--frame-period", type=float, default=None, metavar="SECONDS",
                     help="keep one camera frame per this period of the camera's own clock, the model's "
                          "step (a 30 Hz camera on a robot controlled at 10 Hz: 0.1); a step's action is "
                          "the command held over it (default: every frame)")
    bag.add_argument("--action-names", type=_names, default=None,
                     help="names of the command's values, comma-separated: a MultiArray's, in its "
                          "order (default data[i]); of JointTrajectory commands, the joints whose "
                          "velocities are the actions, taken by name in this order")
    bag.add_argument("--action-units", default=None,
                     help="units of the commands, one text kept in the card as given: rad/s, or in the "
                          "actions' order where they differ: rad/s,rad/s,m/s")
    bag.add_argument("--action-kind", choices=("velocity", "position", "effort", "other"), default=None,
                     help="what a MultiArray's values are (default velocity, as the controller "
                          "commands; its stop is zero, so position commands are refused at configure)")


def run(args: argparse.Namespace) -> int:
    from ..data import DatasetError, dataset_summary, save_dataset

    problem = _refused(args)
    if problem:
        print(f"grasp-ros collect: {problem}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        data = _from_rosbag(args) if args.rosbag else _from_simulator(args)
        save_dataset(data, args.out)
    except (DatasetError, ValueError) as exc:
        print(f"grasp-ros collect: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {dataset_summary(data)} in {time.perf_counter() - started:.1f} s")
    return 0


def _refused(args: argparse.Namespace) -> str | None:
    """Why the options cannot collect, or None: checked before the work, as the file to write."""
    from ..data.dataset import dataset_memory_problem
    from ..models.learned import MAX_IMAGE_SIZE    # 100,000 px had asked for a 28 GiB frame

    low = 1 if args.rosbag else 16     # a simulator draws no less; bags' tests use 8 px
    if not low <= args.image_size <= MAX_IMAGE_SIZE:
        return f"--image-size must be in [{low}, {MAX_IMAGE_SIZE}] pixels, got {args.image_size}"
    if args.horizon is not None and args.horizon < 1:
        return f"--horizon must be >= 1, got {args.horizon}"
    if not args.rosbag and args.episodes >= 1 and args.steps >= 1:   # a bag's size shows only as it is read
        images = args.episodes * (args.steps + 1) * args.image_size ** 2 * 3
        if (problem := dataset_memory_problem(images)) is not None:
            return f"{args.episodes} episodes of {args.steps} steps of {args.image_size} px frames take {problem}"
    return unwritable(args.out, (".npz", ".pt"))


def _from_simulator(args):
    import torch

    from ..data import ExplorationSettings, collect_episodes
    from ..sim import NOMINAL_HORIZON, make_env

    # One step of the simulator is a handful of tiny tensor ops; intra-op threads only add
    # synchronisation (on a busy 2-core machine, 50x slower).
    torch.set_num_threads(1)
    env = make_env(args.env, NOMINAL_HORIZON if args.horizon is None else args.horizon, image_size=args.image_size)
    defaults = ExplorationSettings()
    settings = ExplorationSettings(smoothing=defaults.smoothing if args.smoothing is None else tuple(args.smoothing),
                                   scale=defaults.scale if args.scale is None else args.scale)
    return collect_episodes(env, args.episodes, args.steps, args.seed, settings, progress=not args.quiet)


def _from_rosbag(args):
    from ..data.rosbag import read_rosbag

    for name in ("period", "frame_period"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0 seconds, got {value}")
    data = read_rosbag(args.rosbag, image_topic=args.image_topic, joint_topic=args.joint_topic,
                       command_topic=args.command_topic, image_size=args.image_size, align=args.align,
                       joint_names=None if args.joint_names is None else _names(",".join(args.joint_names)),
                       progress=not args.quiet, joint_fields=args.joint_fields,
                       twist_fields=args.twist_fields, episode_steps=args.episode_steps or None,
                       gap=args.gap, reset_jump=args.reset_jump, episode_topic=args.episode_topic or None,
                       frame_period=args.frame_period, crop=args.crop,
                       continuous_joints=args.continuous_joints, action_names=args.action_names)
    meta = data.meta
    if args.period is not None:
        meta["period"] = args.period
    if args.action_names is not None:
        # A trajectory names its joints: they were read by name above. A Twist's are its fields.
        if meta.get("action_kind") == "twist":
            raise ValueError("--action-names: Twist commands are named by their fields; choose "
                             "them with --twist-fields")
        if len(args.action_names) != data.action_dim:
            raise ValueError(f"--action-names names {len(args.action_names)} actions, the commands have "
                             f"{data.action_dim}")
        meta["action_names"] = list(args.action_names)
    if args.action_units is not None:
        meta["action_units"] = args.action_units
    if args.action_kind is not None:
        if meta.get("action_kind") not in (None, args.action_kind):
            raise ValueError(f"--action-kind {args.action_kind}: the commands are {meta['action_kind']} "
                             "by their message type")
        meta["action_kind"] = args.action_kind
    print(f"{len(meta['bags'])} bag(s): {meta['frames_used']} of {meta['frames']} frames used "
          f"({meta['frames_dropped']} dropped), transitions cut {meta['cuts']}; joints "
          f"{meta['joint_columns']}, actions {meta['action_names']}")
    if meta["unused_nonzero_command_fields"]:
        print(f"grasp-ros collect: warning: command fields {meta['unused_nonzero_command_fields']} move "
              f"but are not kept as actions (--twist-fields)", file=sys.stderr)
    for warning in (dropped_warnings(meta) + command_range_warnings(data) + wrap_warnings(data)
                    + jump_warnings(data) + uncommanded_warnings(data) + still_warnings(data)
                    + unbounded_warnings(data) + bag_warnings(data)):
        print(f"grasp-ros collect: warning: {warning}", file=sys.stderr)
    return data


DROPPED_WARNING = 0.5
"""Share of the bag's frames left out that is worth a warning."""


def dropped_warnings(meta: dict) -> list[str]:
    """Most of the bag left out: cuts so close together that few runs are an episode long (of
    the frames --frame-period keeps: those it thins out are meant to go)."""
    thinned = meta.get("frames_thinned", 0)
    frames, used = meta["frames"] - thinned, meta["frames_used"]
    if not frames or (frames - used) / frames <= DROPPED_WARNING:
        return []
    cuts = {cause: n for cause, n in meta["cuts"].items() if n}
    worst = max(cuts, key=cuts.get, default=None)
    kept = f" that --frame-period keeps ({thinned} thinned out)" if thinned else ""
    return [f"{frames - used} of the {frames} frames{kept} left out ({100 * (frames - used) / frames:.0f}%): "
            f"the cuts {cuts} leave few runs of --episode-steps {meta['split'].get('episode_steps') or 'whole'}"
            + (f"; most are {worst} ({cuts[worst]}): check --{'reset-jump' if worst == 'reset' else 'gap'}"
               if worst in ("reset", "gap") else "")]


RESET_OUTLIER = 10.0
"""A joint step this many times its 99th-percentile step is no motion the robot makes."""


def jump_warnings(data) -> list[str]:
    """Joint positions that leap within an episode far beyond their usual steps (a robot reset
    or teleported between episodes that nothing in the bag reported), when --reset-jump is not
    given: the model would learn the leap as motion."""
    if (data.meta.get("split") or {}).get("reset_jump") is not None:
        return []
    marks = (data.meta.get("topics") or {}).get("episode")
    episode_cuts = (data.meta.get("cuts") or {}).get("episode_topic", 0) if marks else 0
    found, limits = [], {}
    for name, x in _joint_positions(data):
        steps = np.diff(x, axis=1)
        if name in (data.meta.get("continuous_joints") or ()):
            steps = (steps + np.pi) % (2 * np.pi) - np.pi     # a turn across +-pi is no leap
        steps = np.abs(steps[np.isfinite(steps)])
        usual = float(np.percentile(steps, 99)) if steps.size else 0.0
        leaps = steps[steps > RESET_OUTLIER * usual] if usual > 0 else steps[:0]
        if leaps.size:
            found.append(f"joint {name} leaps by up to {leaps.max():.3g} in {leaps.size} step(s), more than "
                         f"{RESET_OUTLIER:g}x its 99th-percentile step ({usual:.3g}): resets of the robot "
                         "between episodes?")
            limits[name] = 5 * usual
    if limits:     # by joint: one limit would cut a joint in rad at a joint in m's leaps
        found.append("to cut at those leaps: --reset-jump "
                     + ",".join(f"{name}={limit:.3g}" for name, limit in limits.items())
                     + " (each joint's 5x its 99th-percentile step)"
                     + (f"; the episode topic {marks} cut {episode_cuts} time(s) and missed these: do "
                        "its reports come after the frames of the reset? (a JSON \"t\" field places a "
                        "report at that time, before the frame stamped t)" if episode_cuts else
                        "; an episode topic, --episode-topic, says so better where the bag has one"))
    return found


def uncommanded_warnings(data) -> list[str]:
    """Joints the commands never name (a JointTrajectory's joints are its actions): a gripper's,
    a passive joint's. The model encodes them, so every goal must give them and a dead
    publisher of them stops the controller."""
    names, actions = data.meta.get("joint_names") or [], data.meta.get("action_names") or []
    if not str(data.meta.get("command_type", "")).endswith("JointTrajectory") or not names:
        return []
    others = [n for n in names if n not in actions]
    if not others:
        return []
    return [f"joints {others} are in joint_states but never commanded (the commands drive {list(actions)}): "
            "the model will encode them, every goal must give them, and a stopped publisher of them "
            f"stops the controller; leave them out with --joint-names {','.join(n for n in names if n in actions)}"]


def still_warnings(data) -> list[str]:
    """Joints that never move in the bags (a passive finger, a locked joint) that
    ``uncommanded_warnings`` does not already name: the same costs, and any goal value but the
    one they held is NOVEL."""
    moving, still = [], []
    for name, x in _joint_positions(data):
        finite = x[np.isfinite(x)]
        (still if finite.size and float(finite.max() - finite.min()) < 1e-9 else moving).append(name)
    if not str(data.meta.get("command_type", "")).endswith("JointTrajectory"):
        named = still
    else:
        named = [n for n in still if n in (data.meta.get("action_names") or [])]
    if not named:
        return []
    return [f"joints {_listed(named)} never move in the bags: the model will encode them, every "
            "goal must give them (any other value than the one they held is NOVEL), and a stopped "
            f"publisher of them stops the controller; leave them out with --joint-names "
            f"{_listed(moving, ',')}"]


UNBOUNDED_RANGE = 4 * np.pi
"""A joint whose positions span more than this, and never wrap, counts turns without end."""


def unbounded_warnings(data) -> list[str]:
    """Joints whose positions count turns without end (a wheel's odometer: 0 to 265 rad in 200 s
    of a base's bag), declared continuous or not: the model learns positions it will not see
    again (a base driven 50 m since boot was NOVEL on every cycle), and a goal on them means
    nothing for where the robot is."""
    found, kept = [], []
    for name, x in _joint_positions(data):
        finite = x[np.isfinite(x)]
        bounded = not finite.size or float(finite.max() - finite.min()) <= UNBOUNDED_RANGE
        wraps = np.nanmax(np.abs(np.diff(x, axis=1)), initial=0.0) > 1.5 * np.pi   # turns after all
        (kept if bounded or wraps else found).append(name)
    if not found:
        return []
    return [f"joints {_listed(found)} count turns without end (positions over more than "
            f"{UNBOUNDED_RANGE:.3g} rad, never wrapping): wheels? the model would learn positions it "
            "will not see again; leave them out" + (f" with --joint-names {_listed(kept, ',')}" if kept
                                                   else " (a camera-only model, or the base's pose "
                                                        "from odometry as joints x, y, yaw)")]


def _listed(names, separator: str = ", ") -> str:
    from ..models.text import shorten
    return shorten(separator.join(names))


def bag_warnings(data) -> list[str]:
    """Per bag: camera frames left out as unreadable, header stamps that jump back (a driver's),
    a camera cropped to a square."""
    found = []
    for info in data.meta.get("bags") or ():
        if info.get("frames_unreadable"):
            found.append(f"rosbag {info['path']!r}: {info['frames_unreadable']} camera frame(s) could not be "
                         f"read and were left out ({'; '.join(info['unreadable'])}"
                         f"{'; ...' if info['frames_unreadable'] > len(info['unreadable']) else ''})")
        for role, count in (info.get("stamps_back") or {}).items():
            if count:
                topic = data.meta["topics"][role]
                found.append(f"rosbag {info['path']!r}: {topic} header stamps jump back {count} time(s) "
                             "in receive order: a driver's broken stamps? frames pair with joints by "
                             "them, and a controller fed them sees its clock jump back")
        if data.meta.get("crop") == "center":
            for width, height, _ in info.get("camera_sizes") or ():
                if width != height:
                    side = min(width, height)
                    found.append(f"rosbag {info['path']!r}: camera frames are {width}x{height}: --crop "
                                 f"center keeps the middle {side}x{side} ({1 - side / max(width, height):.0%} "
                                 f"of the {'width' if width > height else 'height'} dropped, in training "
                                 "and at the controller); --crop stretch keeps the whole frame")
                    break
    return found


def wrap_warnings(data) -> list[str]:
    """Joint positions that jump by about a turn within an episode while staying within +-pi:
    angles that wrap, not declared (--continuous-joints)."""
    found = []
    for name, x in _joint_positions(data):
        if name in (data.meta.get("continuous_joints") or ()):
            continue
        steps = np.abs(np.diff(x, axis=1))
        # A wrap goes from near +pi to near -pi (a step of nearly 2 pi); a reset of a joint with
        # hard stops (an unreported one) leaps by anything.
        near_turn = (steps > 1.5 * np.pi) & (np.abs(x[:, 1:]) > 0.75 * np.pi) & (np.abs(x[:, :-1]) > 0.75 * np.pi)
        jumps = int(near_turn.sum())
        if jumps and jumps == int((steps > np.pi).sum()) and np.abs(x).max() <= np.pi + 1e-3:
            found.append(f"joint {name} jumps by more than pi in {jumps} step(s) and stays within "
                         f"+-pi: an angle that wraps? give --continuous-joints {name} (cut there, "
                         "and goals on it taken at their nearest turn)")
    return found


def _joint_positions(data) -> list[tuple[str, np.ndarray]]:
    """(name, positions [episodes, steps + 1]) of each joint, where the dataset names its joints
    and holds their positions."""
    from ..models.joint_layout import position_columns

    meta = data.meta
    names, fields = meta.get("joint_names") or [], meta.get("joint_fields") or ["position"]
    if "position" not in fields or not names or data.joints.shape[-1] != len(names) * len(fields):
        return []
    return [(name, data.joints[..., c]) for name, c in zip(names, position_columns(names, fields))]


def command_range_warnings(data) -> list[str]:
    """Kept commands that never change (their bounds would be invented) or never stop."""
    from ..models.card import stop_warnings
    flat = data.actions.reshape(-1, data.action_dim)
    names = data.meta.get("action_names") or [f"data[{i}]" for i in range(data.action_dim)]
    low, high = flat.min(0), flat.max(0)
    constant = [f"action {name} is {lo:g} in every command: the robot was never commanded on it, "
                "and the model's bounds for it would be invented; leave it out (--twist-fields)"
                for name, lo, hi in zip(names, low, high) if hi - lo < 1e-9]
    return constant + stop_warnings(names, low.tolist(), high.tolist())


def _reset_jump_arg(text: str):
    """--reset-jump: one limit (a number), or limits by joint name ("shoulder=0.4,gripper=0.02")."""
    if "=" not in text:
        return float(text)
    limits = {}
    for item in _names(text):
        name, _, value = item.partition("=")
        if not name.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"expected JOINT=LIMIT, got {item!r}")
        limits[name.strip()] = float(value)
    return limits


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _twist_fields(text: str):
    return "auto" if text.strip() == "auto" else _names(text)
