"""Print a ROS 2 domain id that no node on this host uses now: ``make test`` runs on it.

A test run shares the machine with whatever else runs there; on a domain another process uses
(a simulator, a bag player, another test run) the tests would see its /clock and its topics,
and a replay refuses a clock it does not own. Tries random domains (or ``--candidates``), each
for ``PROBE_S`` of discovery, and prints the first on which no other node appears; when every
one is in use, the last tried.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time

PROBE_S = 1.0
"""Seconds of discovery per domain: a new participant announces itself and the others answer it."""
TRIES = 8
DOMAINS = range(10, 230)
"""Fast DDS's default port mapping fits domain ids up to 232."""


def others_on(domain: int, seconds: float = PROBE_S) -> bool:
    """Whether a node other than this probe is on ``domain`` (this host's discovery range),
    looking for at most ``seconds`` (an answer ends the look at once)."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=domain)
    try:
        node = rclpy.create_node(f"domain_probe_{os.getpid()}", context=context)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if len(node.get_node_names()) > 1:
                return True
            time.sleep(0.05)
        return False
    finally:
        rclpy.shutdown(context=context)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, nargs="+", help="domains to try, in order")
    parser.add_argument("--probe", type=float, default=PROBE_S,
                        help=f"seconds of discovery per domain at most (default {PROBE_S:g})")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    candidates = args.candidates or random.Random().sample(DOMAINS, TRIES)
    for domain in candidates:
        if not others_on(domain, args.probe):
            break
    print(domain)
    return 0


if __name__ == "__main__":
    sys.exit(main())
