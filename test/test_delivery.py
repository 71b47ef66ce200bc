"""Frames that never reach the node, counted by their publishers' sequence numbers
(``grasp_ros.ros.delivery``); the DDS case is in test_controller_node.py."""
from __future__ import annotations

from grasp_ros.ros import delivery
from grasp_ros.ros.delivery import DeliveryCount, loss_note


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def info(publisher: int, number: int) -> dict:
    return {"publisher_gid": {"data": bytes([publisher]) * 16}, "publication_sequence_number": number}


def test_gaps_in_each_publishers_numbering_are_the_frames_missed():
    count = DeliveryCount(Clock())
    for number in (7, 8, 10, 14):          # the first only says where it starts
        count.note(info(1, number))
    assert count.lost() == (4, 8)          # 9, 11, 12, 13 missed; 7 .. 14 published
    count.note(info(2, 100))               # another camera's numbering is its own
    count.note(info(2, 102))
    assert count.lost() == (5, 11)
    count.note(info(1, 12))                # late or repeated: changes nothing
    count.note(info(1, 14))
    count.note(None)                       # an RMW that numbers nothing: counted as nothing
    count.note({"publisher_gid": {"data": bytes(16)}, "publication_sequence_number": None})
    assert count.lost() == (5, 11)


def test_only_the_last_seconds_count():
    clock = Clock()
    count = DeliveryCount(clock)
    count.note(info(1, 1))
    count.note(info(1, 50))                # 48 missed at t = 0
    clock.t = delivery.WINDOW_S + 1.0
    count.note(info(1, 51))
    assert count.lost() == (0, 1)


def test_the_note_names_the_remedy_for_each_reliability():
    count = DeliveryCount(Clock())
    for number in range(1, 41):            # 40 of 40: nothing to say
        count.note(info(1, number))
    assert loss_note(count, "/cam/image", False, lambda: True) is None
    count.note(info(1, 80))                # 39 missed of 80
    text = loss_note(count, "/cam/image", False, lambda: True)
    assert text.startswith("/cam/image: 39 of the last 80 camera frames published never reached")
    assert "-p qos_overrides./cam/image.subscription.reliability:=reliable" in text
    assert "camera_reliability:=reliable of grasp_controller.launch.py" in text
    assert "compressed" in loss_note(count, "/cam/image", False, lambda: False)
    assert "compressed" in loss_note(count, "/cam/image", False, lambda: None)
    assert "left its queue" in loss_note(count, "/cam/image", True, lambda: True)
    # Frames too small for DDS fragments are lost whole: a held-up executor, not reliability (the
    # note blamed fragments for a small camera's frames pushed out of a busy node's queue).
    small = DeliveryCount(Clock())
    for number in (*range(1, 41), 80):
        small.note(info(1, number), size=12_345)
    text = loss_note(small, "/cam/image", False, lambda: False)
    assert "frames of 12345 bytes are not split into DDS fragments" in text and "depth:=10" in text
    assert "reliability" not in text and "compressed" not in text
    small.note(info(1, 81), size=delivery.FRAGMENT_BYTES + 1)
    assert "fragments it misses" in loss_note(small, "/cam/image", False, lambda: True)
    few = DeliveryCount(Clock())
    few.note(info(1, 1))
    few.note(info(1, 20))                  # 18 of 20 missed, but too few published to judge
    assert loss_note(few, "/cam/image", False, lambda: True) is None
