"""``grasp-ros replay BAG``: replay a recorded run into a real controller and diff its commands.

    grasp-ros replay test/data/demo_lockstep                       # the recorded settings
    grasp-ros replay my_bag -p planner:=cem --out ab_cem            # what would CEM have done?
    grasp-ros replay my_bag -p model_options:='{checkpoint: new.pt}' --max-command-diff 0.2
    grasp-ros replay my_bag --start 10 --end 30 --speed 1          # a window, at real time
    grasp-ros replay my_bag --launch                                # the controller via ros2 launch

Writes replay.md, replay.json ("bench": "replay"), replay.png, cycles.csv and controller.log
into --out. Exit status: 0 within the tolerances, 1 beyond them, 2 for a bad bag or bad
options (nothing written), 3 when the controller could not be replayed (refused its
parameters, died, hung, or the whole replay ran past --timeout; its log is kept), 130 when
interrupted (SIGINT, SIGTERM).
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ..replay import BagError, ReplayError, ReplayOptions, Tolerances, prepare, replay
from ..replay.driver import CONTROLLER_LAUNCH_FILE
from ..replay.run import TIMEOUT_BASE_S, TIMEOUT_PER_SECOND
from ..replay.settings import ITERATION_MODES, parse_assignment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tolerances = Tolerances()
    parser.add_argument("bag", type=Path, help="rosbag2 folder (mcap or sqlite3), or a bare .mcap / .db3")
    parser.add_argument("--out", type=Path, default=ReplayOptions.out, help="output folder (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="benchmark JSON (default: OUT/replay.json)")
    parser.add_argument("-p", dest="params", action="append", default=[], metavar="NAME:=VALUE",
                        help="change a controller parameter for the replay (repeatable)")
    parser.add_argument("--param", dest="params", action="append", metavar="NAME=VALUE",
                        help="the same as -p")
    parser.add_argument("--params-file", type=Path, action="append", default=[],
                        help="a ROS 2 parameter file for the controller, over the recorded parameters "
                             "(repeatable: a later file's values win, as with the node's own --params-file)")
    parser.add_argument("--iterations", choices=ITERATION_MODES, default=ReplayOptions.iterations,
                        help="planner iterations per cycle: each cycle's recorded count, or "
                             "planner.iterations; auto: the parameter when the recording ran fixed "
                             "iterations or -p or a file gives planner or planner.iterations another "
                             "value than the recorded one, else recorded")
    parser.add_argument("--start", type=float, default=ReplayOptions.start,
                        help="seconds after the bag's first cycle to start")
    parser.add_argument("--end", type=float, default=ReplayOptions.end,
                        help="seconds after the bag's first cycle to end")
    parser.add_argument("--speed", type=float, default=ReplayOptions.speed,
                        help="at most this many times real time (default %(default)g: as fast as it goes)")
    parser.add_argument("--max-command-diff", type=float, default=tolerances.max_command_diff,
                        help="tolerance on the largest command difference (default: %(default)s)")
    parser.add_argument("--max-rms-command-diff", type=float, default=tolerances.rms_command_diff,
                        help="tolerance on the RMS difference")
    parser.add_argument("--max-status-changes", type=int, default=tolerances.status_changes,
                        help="cycles whose status may differ (default: %(default)s)")
    parser.add_argument("--max-cost-diff", type=float, default=tolerances.cost_diff,
                        help="tolerance on the plan cost difference")
    for role, flag in (("image", "--image-topic"), ("joints", "--joint-topic"),
                       ("goal_state", "--goal-state-topic"), ("goal_image", "--goal-image-topic"),
                       ("diagnostics", "--diagnostics-topic"), ("clock", "--clock-topic")):
        parser.add_argument(flag, dest=f"topic_{role}", default=None, metavar="TOPIC",
                            help=f"the bag's {role.replace('_', ' ')} topic (default: found by name)")
    parser.add_argument("--launch", action="store_true",
                        help=f"start the controller with `ros2 launch grasp_ros {CONTROLLER_LAUNCH_FILE}` "
                             "(needs a ROS 2 install with the package built) instead of python -m")
    parser.add_argument("--cycle-timeout", type=float, default=ReplayOptions.cycle_timeout,
                        help="wall seconds to wait for one cycle before giving up (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=ReplayOptions.timeout,
                        help="wall seconds for the whole replay, the controller's start included, "
                             f"before giving up, exit 3 (default %(default)g: {TIMEOUT_BASE_S:g} + "
                             f"{TIMEOUT_PER_SECOND:g} per recorded second of the window)")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    # A CI job's timeout sends SIGTERM: end as Ctrl-C does, through the clean-up (the controller
    # stopped, the scratch folder removed), with no traceback; so from the start (reading a bag).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("grasp-ros replay: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    try:
        overrides = dict(parse_assignment(text) for text in args.params)
        options = ReplayOptions(
            bag=args.bag, out=args.out, json=args.json, overrides=overrides, params_files=tuple(args.params_file),
            iterations=args.iterations, start=args.start, end=args.end, speed=args.speed,
            tolerances=Tolerances(args.max_command_diff, args.max_rms_command_diff,
                                  args.max_status_changes, args.max_cost_diff),
            topics={k[len("topic_"):]: v for k, v in vars(args).items() if k.startswith("topic_") and v},
            cycle_timeout=args.cycle_timeout, timeout=args.timeout, launch=args.launch)
        prepared = prepare(options)
    except (BagError, ValueError) as exc:
        print(f"grasp-ros replay: {exc}", file=sys.stderr)
        return 2
    recording = prepared.recording
    given = "--params-file / -p, else defaults" if args.params_file or overrides else "defaults"
    print(f"grasp-ros replay: {recording.path} ({recording.storage}): {len(recording.cycles)} cycles, "
          f"{len(recording.inputs)} inputs; parameters "
          + ("from the bag" if recording.parameters is not None else f"{given} (none in the bag)")
          + (f", changed {overrides}" if overrides else "") + f"; iterations {prepared.iterations}", flush=True)
    try:
        outcome = replay(prepared, progress=lambda text: print(text, flush=True))
    except BagError as exc:   # a topic the controller reads is not in the bag
        print(f"grasp-ros replay: {exc}", file=sys.stderr)
        return 2
    except (ReplayError, OSError) as exc:     # OSError: an output that could not be written
        print(f"grasp-ros replay: {exc}", file=sys.stderr)
        return 3
    s, info = outcome.comparison.summary, outcome.info
    print(f"{s['compared']} cycles: max command difference {s['max_command_diff']:.3g}, RMS "
          f"{s['rms_command_diff']:.3g}, {s['status_changes']} status changes, "
          f"{s['input_mismatches']} input mismatches; {info.speed_vs_real_time:.1f}x real time")
    print("open loop: the recorded future did not react to the replayed commands")
    print("wrote " + ", ".join(str(p) for p in outcome.files.values()))
    if not outcome.comparison.passed:
        print("replay FAILED: " + "; ".join(outcome.comparison.failures))
        return 1
    print("replay passed")
    return 0
