"""Messages a subscription never got, counted by their publishers' sequence numbers.

Every DDS writer numbers its samples (MessageInfo's ``publication_sequence_number``), so a gap
between two samples a subscription received is samples that never reached the node: lost on the
way, or pushed out of the reader's queue before the executor took them. Large camera frames are
the case that matters: DDS splits a frame into fragments, and a best-effort reader loses any frame
one of whose fragments it misses. With Fast DDS's defaults on one host, a best-effort reader
took 50-75% of a 30 Hz camera's 640x480 rgb frames, 1-20% at 1280x720 and 0-1% at 1920x1080, a
reliable one all of them (``tools/camera_transport.py``, docs/benchmarks/camera_transport/).
"""
from __future__ import annotations

import collections
import time
from typing import Callable, Optional

from rclpy.qos import ReliabilityPolicy

WINDOW_S = 5.0
"""Deliveries counted: those of the last this many (wall) seconds."""
ENOUGH = 30
"""Publications in the window before a loss is judged (one second of a 30 Hz camera)."""
WORTH_SAYING = 0.2
"""Fraction lost above which it is said (log and /diagnostics)."""
PUBLISHERS_KEPT = 64
FRAGMENT_BYTES = 64 * 1024
"""Messages larger than this are split into DDS fragments (a UDP datagram's limit); smaller
ones are lost whole, if at all, so their loss is the reader's queue, not a missed fragment."""


def fragmented(size: Optional[int]) -> bool:
    """Whether a message of ``size`` bytes (None: not known) goes in DDS fragments, any of which
    a best-effort reader may miss."""
    return size is not None and size > FRAGMENT_BYTES


class DeliveryCount:
    """Deliveries of one subscription and the gaps in each publisher's numbering before them."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._last: dict[bytes, int] = {}                       # publisher -> its last number
        self._deliveries: collections.deque = collections.deque()   # (time, missed before it)
        self._missed_total = self._received_total = 0
        self.size: Optional[int] = None          # the last message's serialised bytes

    def note(self, info: Optional[dict], size: Optional[int] = None) -> None:
        """A message received with ``info`` (MessageInfo: publisher id, sequence number); one
        without them (an RMW that gives none) counts for nothing. ``size``: its serialised bytes."""
        if size is not None:
            self.size = size
        gid = ((info or {}).get("publisher_gid") or {}).get("data")
        number = (info or {}).get("publication_sequence_number")
        if not gid or not isinstance(number, int) or number <= 0:
            return
        key, now = bytes(gid), self._clock()
        last = self._last.get(key)
        if last is not None and number <= last:     # out of order, or a repeat: no news
            return
        if last is None and len(self._last) >= PUBLISHERS_KEPT:
            self._last.clear()
        self._last[key] = number
        missed = 0 if last is None else number - last - 1
        self._deliveries.append((now, missed))
        self._missed_total += missed
        self._received_total += 1
        self._trim(now)

    def lost(self) -> tuple[int, int]:
        """(messages missed, messages published) in the last ``WINDOW_S`` seconds, by the
        numbers of those received."""
        self._trim(self._clock())
        missed = sum(gap for _, gap in self._deliveries)
        return missed, missed + len(self._deliveries)

    def lost_in_all(self) -> tuple[int, int]:
        """(messages missed, messages published) since the first one received."""
        return self._missed_total, self._missed_total + self._received_total

    def _trim(self, now: float) -> None:
        while self._deliveries and self._deliveries[0][0] < now - WINDOW_S:
            self._deliveries.popleft()


def loss_note(count: DeliveryCount, topic: str, reliable_reader: bool,
              reliable_writers: Callable[[], Optional[bool]]) -> Optional[str]:
    """What to say of the frames ``count`` says never arrived on ``topic``, with the remedy for
    this reader's and the publishers' reliability (``reliable_writers()``: all of them reliable;
    None: unknown; asked only when there is something to say); None while nothing worth saying
    was lost."""
    missed, published = count.lost()
    if published < ENOUGH or missed <= WORTH_SAYING * published:
        return None
    said = (f"{topic}: {missed} of the last {published} camera frames published never reached the "
            "controller (by their publishers' sequence numbers)")
    if count.size is not None and not fragmented(count.size) and not reliable_reader:
        # whole small frames: a best-effort reader's queue overflows as a reliable one's does
        return (f"{said}: frames of {count.size} bytes are not split into DDS fragments, so they "
                "left its queue before the executor took them (a held-up executor: a busy CPU; a "
                f"deeper queue: -p qos_overrides.{topic}.subscription.depth:=10), or the network "
                "lost them")
    if reliable_reader:
        return (f"{said}: they left its queue before the executor took them, or the camera "
                "dropped them (a held-up executor; a deeper queue: "
                f"-p qos_overrides.{topic}.subscription.depth:=10)")
    if reliable_writers():
        return (f"{said}: a best-effort reader loses any frame whose DDS fragments it misses, "
                "most large raw frames; the camera publishes reliably, so read it reliably: "
                f"-p qos_overrides.{topic}.subscription.reliability:=reliable, or the launch "
                "argument camera_reliability:=reliable of grasp_controller.launch.py")
    return (f"{said}: a best-effort camera's large frames are lost in DDS fragments; publish them "
            "reliably (then -p qos_overrides."
            f"{topic}.subscription.reliability:=reliable), compressed (image_transport: compressed) "
            "or smaller")


def reliable(profile) -> bool:
    return profile is not None and profile.reliability == ReliabilityPolicy.RELIABLE


def all_reliable(node, topic: str) -> Optional[bool]:
    """Whether every publisher on ``topic`` is reliable (None: none found)."""
    writers = node.get_publishers_info_by_topic(topic)
    return all(reliable(w.qos_profile) for w in writers) if writers else None
