"""``grasp-ros record``: record topics into a rosbag2 that ``grasp-ros collect --rosbag`` reads.

    grasp-ros record runs/today                        # the default topics, until Ctrl-C
    grasp-ros record runs/sim --duration 120 --storage sqlite3
    grasp-ros record runs/cam --topics /camera/image_raw joint_states /cmd_vel:geometry_msgs/msg/Twist

The bag is written into a hidden folder beside OUT and renamed to OUT when the recording ends
(Ctrl-C, SIGTERM, --duration or --messages), so OUT is only ever a finished bag. A recording of
no message leaves nothing (exit status 1). At the end it prints the messages recorded per topic.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ._paths import missing_folder
from ..ros.recorder import CONTROLLER, DEFAULT_TOPICS, parse_topics, record_bag

STORAGES = ("mcap", "sqlite3")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="rosbag2 folder to create (must not exist)")
    parser.add_argument("--topics", nargs="+", default=None, metavar="TOPIC[:TYPE]",
                        help="topics to record, each optionally with its type (default: "
                             + " ".join(DEFAULT_TOPICS) + ")")
    parser.add_argument("--storage", choices=STORAGES, default="mcap", help="bag storage (default: mcap)")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this many seconds of wall clock")
    parser.add_argument("--messages", type=int, default=None, metavar="N",
                        help="stop after N messages (all topics together)")
    parser.add_argument("--controller", default=CONTROLLER, metavar="NODE",
                        help="the controller node whose parameters are written into the bag's "
                             "metadata, for grasp-ros replay ('' for none; default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    problem = _check(args, out)
    if problem:
        print(f"grasp-ros record: {problem}", file=sys.stderr)
        return 2
    stop = []
    for signum in (signal.SIGINT, signal.SIGTERM):   # a flag, not an exception: never stop mid-write
        signal.signal(signum, lambda *_: stop.append(True))
    recorder = record_bag(out, parse_topics(args.topics or DEFAULT_TOPICS), args.storage, args.duration,
                          args.messages, stop=lambda: bool(stop), log=lambda text: print(text, flush=True),
                          controller=args.controller or None)
    print(recorder.summary())
    if not recorder.total:
        print("grasp-ros record: no message arrived; no bag written", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


def _check(args: argparse.Namespace, out: Path) -> str:
    if out.exists():
        return f"{str(out)!r} exists already; name a new folder"
    if missing_folder(out):
        return missing_folder(out)
    if args.duration is not None and not args.duration > 0:
        return f"--duration must be > 0 seconds, got {args.duration}"
    if args.messages is not None and args.messages < 1:
        return f"--messages must be >= 1, got {args.messages}"
    try:
        parse_topics(args.topics or DEFAULT_TOPICS)
    except ValueError as exc:
        return str(exc)
    return ""
