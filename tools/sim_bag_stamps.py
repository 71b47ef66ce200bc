#!/usr/bin/env python3
"""Check, and rewrite in sim time, the stamps of a rosbag2 recorded from the sim node (grasp_sim).

A bag's stamps are receive times (wall clock), and ``grasp-ros collect`` pairs messages by them:
each camera frame with the joint state nearest in receive time, each step with the command
last received before the next frame. For a recording of the sim node that goes wrong three ways:

* faster than real time (``rate_factor`` > 1, ``lockstep``) the frame period is the wall clock's;
* the node publishes, per step, joint_states(t), then (``explore``) the command that drives the
  step t -> t+1, then renders and publishes image(t): the command arrives before its own frame,
  so the importer's ``align=end`` pairs each step with the next step's command;
* when a render or the process stalls (a busy CPU, or a sim catching up after falling behind),
  image(t) arrives nearer joint_states(t+1) than joint_states(t) and gets the wrong joints.

``--check`` counts these in a bag, from the header stamps the sim puts on its images and joint
states. With ``--out`` the bag is copied with every message stamped with the sim time it
describes: images and joint states their header stamp, a command that of the joint state
received last before it plus 1 us (the exploration policy answers that joint state; the command
drives the next step), an episode report its own ``"t"``. Other topics are left out. The copy
then imports exactly: frames and joints of the same instant, the command applied over each step,
and the period of the sim (0.1 s for the arm), without ``--period``:

    python tools/sim_bag_stamps.py arm_bag --check
    python tools/sim_bag_stamps.py arm_bag --out arm_bag_sim_time
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

NS = 1_000_000_000
COMMAND_DELAY_NS = 1_000
TOPICS = {"image": "/image", "joints": "/joint_states", "command": "/command", "episode": "/grasp_sim/episode"}


def read(bag: Path) -> dict:
    """Per role: receive stamps, header (or report) stamps in ns, and the raw messages in receive order."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    out = {role: {"recv": [], "sim": [], "raw": []} for role in TOPICS}
    role_of = {topic: role for role, topic in TOPICS.items()}
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        conns = [c for c in reader.connections if c.topic in role_of]
        missing = sorted(set(TOPICS.values()) - {c.topic for c in conns} - {TOPICS["episode"]})
        if missing:
            raise SystemExit(f"{bag}: no topic {missing}")
        out["types"] = {role_of[c.topic]: c.msgtype for c in conns}
        for conn, stamp, raw in reader.messages(connections=conns):
            role = role_of[conn.topic]
            entry = out[role]
            entry["recv"].append(stamp)
            entry["raw"].append(raw)
            if role in ("image", "joints"):
                h = reader.deserialize(raw, conn.msgtype).header.stamp
                entry["sim"].append(h.sec * NS + h.nanosec)
            elif role == "episode":
                entry["sim"].append(round(json.loads(reader.deserialize(raw, conn.msgtype).data)["t"] * NS))
    for role in TOPICS:
        out[role]["recv"] = np.asarray(out[role]["recv"], np.int64)
        out[role]["sim"] = np.asarray(out[role]["sim"], np.int64)
    return out


def command_stamps(bag: dict) -> np.ndarray:
    """Each command's sim time: the header stamp of the joint state received last before it + 1 us
    (-1: none before it)."""
    joints = bag["joints"]
    last = np.searchsorted(joints["recv"], bag["command"]["recv"], side="right") - 1
    return np.where(last >= 0, joints["sim"][np.maximum(last, 0)] + COMMAND_DELAY_NS, -1)


def check(bag: dict) -> dict:
    """What receive-time pairing does to this bag (see the module doc)."""
    image, joints = bag["image"], bag["joints"]
    t, tj = image["recv"], joints["recv"]
    right = np.clip(np.searchsorted(tj, t), 1, len(tj) - 1)
    nearest = np.where(t - tj[right - 1] <= tj[right] - t, right - 1, right)
    wrong = joints["sim"][nearest] != image["sim"]
    # commands received between a frame's own joint state and the frame
    own = np.searchsorted(joints["sim"], image["sim"])
    own = np.minimum(own, len(tj) - 1)
    cmd = bag["command"]["recv"]
    between = np.searchsorted(cmd, t) - np.searchsorted(cmd, tj[own])
    wall = np.diff(t) / NS
    return {"frames": len(t), "joint_states": len(tj), "commands": len(cmd),
            "wall_period_s": float(np.median(wall)) if len(wall) else None,
            "sim_period_s": float(np.median(np.diff(image["sim"]))) / NS if len(t) > 1 else None,
            "frames_paired_with_another_instant": int(wrong.sum()),
            "commands_before_their_frame": int((between > 0).sum()),
            "sim_s": float(image["sim"][-1] - image["sim"][0]) / NS if len(t) else 0.0,
            "wall_s": float(t[-1] - t[0]) / NS if len(t) else 0.0}


def rewrite(bag: dict, source: Path, out: Path) -> int:
    """Write ``bag`` to ``out`` in sim time (see the module doc); returns the commands left out
    (received before any joint state)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    storage = StoragePlugin.SQLITE3 if any(source.rglob("*.db3")) else StoragePlugin.MCAP
    stamps = {"image": bag["image"]["sim"], "joints": bag["joints"]["sim"], "command": command_stamps(bag),
              "episode": bag["episode"]["sim"]}
    with Writer(out, version=9, storage_plugin=storage) as writer:
        for role, kind in bag["types"].items():
            conn = writer.add_connection(TOPICS[role], kind, typestore=store)
            order = np.argsort(stamps[role], kind="stable")
            for i in order:
                if stamps[role][i] >= 0:
                    writer.write(conn, int(stamps[role][i]), bag[role]["raw"][i])
    return int((stamps["command"] < 0).sum())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bags", nargs="+", type=Path, help="rosbag2 folders recorded from grasp_sim")
    parser.add_argument("--check", action="store_true", help="only report what receive-time pairing does")
    parser.add_argument("--out", type=Path, default=None,
                        help="the sim-time copy (one bag), or a folder for one copy per bag (several)")
    args = parser.parse_args(argv)
    if not args.check and args.out is None:
        parser.error("give --check or --out")
    for source in args.bags:
        bag = read(source)
        report = check(bag)
        print(f"{source}: {json.dumps(report)}")
        if args.check:
            continue
        out = args.out if len(args.bags) == 1 else args.out / source.name
        if out.exists():
            print(f"{out} exists already", file=sys.stderr)
            return 2
        out.parent.mkdir(parents=True, exist_ok=True)
        dropped = rewrite(bag, source, out)
        print(f"wrote {out} in sim time" + (f" ({dropped} commands before the first joint state left out)"
                                            if dropped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
