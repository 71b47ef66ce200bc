"""The goal intake's rules (``grasp_ros.control.goal_intake``), without ROS: which goal messages
become the loop's goal. The node's test (test_card_node) drives the same rules over DDS."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from grasp_ros.control.goal_intake import GoalIntake


class GoalLog:
    """The loop's side of the intake: its settings and every goal it was given."""

    def __init__(self, pairs_joints: bool, decodes_joints: bool = True):
        self.pairs_joints = pairs_joints
        self.config = SimpleNamespace(pair_tolerance=0.05, max_observation_age=0.5)
        self.model = SimpleNamespace(decode_state=(lambda z: z) if decodes_joints else None)
        self.goals: list[dict] = []

    def set_goal(self, goal):
        self.goals.append({k: np.asarray(v).tolist() for k, v in goal.items()})

    def reject_goal(self, reason):
        self.goals.append({"refused": reason})


IMAGE_A, IMAGE_B = np.zeros((2, 2, 3), np.uint8), np.ones((2, 2, 3), np.uint8)
JOINTS_A, JOINTS_B = np.array([0.1, 0.2]), np.array([0.3, 0.4])


def test_one_input_goals_replace_by_arrival_within_a_kind_and_by_stamp_across_kinds():
    loop = GoalLog(pairs_joints=False)
    intake = GoalIntake(loop, observes_image=True)
    assert intake.take("joints", JOINTS_A, 5).taken
    assert intake.take("joints", JOINTS_B, 2).taken             # same kind: the newest to arrive
    late = intake.take("image", IMAGE_A, 1)                      # other kind, older stamp
    assert not late.taken and "stamped before the joints goal" in late.note and not late.warns
    assert intake.take("image", IMAGE_A, 2).taken                # same stamp: the kind observed wins
    same = intake.take("joints", JOINTS_A, 2)
    assert not same.taken and "of the same stamp stands" in same.note
    assert intake.take("joints", JOINTS_A, 3).taken              # newer stamp
    assert loop.goals == [{"joints": [0.1, 0.2]}, {"joints": [0.3, 0.4]},
                          {"image": IMAGE_A.tolist()}, {"joints": [0.1, 0.2]}]


def test_a_goal_stamped_far_ahead_of_the_clock_is_ordered_as_sent_now():
    """Ordered by a stamp at the end of int32 time (or on the wall clock while the loop runs on
    sim time), a goal held out every later goal of the other kind stamped on the loop's clock
    (an adversarial audit). Further ahead than max_observation_age it counts as unstamped."""
    second = 10**9
    loop = GoalLog(pairs_joints=False)
    intake = GoalIntake(loop, observes_image=True)
    ahead = intake.take("joints", JOINTS_A, (2**31 - 1) * second, now=100 * second)
    assert ahead.taken and ahead.warns and "ahead of the clock" in ahead.note
    assert intake.take("image", IMAGE_A, 101 * second, now=101 * second).taken
    near = intake.take("joints", JOINTS_B, 101 * second + second // 10, now=101 * second)
    assert near.taken and not near.warns                        # a little ahead: its stamp stands
    assert not intake.take("image", IMAGE_B, 101 * second, now=101 * second).taken


def test_after_the_clock_jumps_back_a_goal_of_the_other_kind_replaces_the_standing_one():
    """A sim reset sends the clock back 100 s: the goal image stamped before it stands 96.5 s
    ahead of the clock, and its stamp orders nothing now. A joint goal stamped on the new clock
    was refused as older than it, and the robot went on to the old goal, OK (an audit of bad
    clocks). Without a jump, the rule stands: an older joint goal is still refused."""
    second = 10**9
    loop = GoalLog(pairs_joints=False)
    intake = GoalIntake(loop, observes_image=True)
    assert intake.take("image", IMAGE_A, 1005 * second, now=1005 * second).taken
    assert not intake.take("joints", JOINTS_A, 1004 * second, now=1005 * second).taken
    after = intake.take("joints", JOINTS_B, 908 * second + second // 2, now=908 * second + second // 2)
    assert after.taken and not after.note
    assert loop.goals == [{"image": IMAGE_A.tolist()}, {"joints": [0.3, 0.4]}]
    assert intake.take("image", IMAGE_B, 909 * second, now=909 * second).taken


def test_an_unstamped_goal_is_newer_than_any_stamped_one_of_the_other_kind():
    """Unstamped is "now": a goal typed by hand (``ros2 topic pub``, no stamp) after a stamped
    goal of the other kind is taken (an adversarial audit: 20 of 20 cycles kept the old goal
    image's ERROR). Two unstamped ones of both kinds are "of one stamp": the kind observed wins."""
    loop = GoalLog(pairs_joints=False)
    intake = GoalIntake(loop, observes_image=True)
    assert intake.take("image", IMAGE_A, 7).taken
    assert intake.take("joints", JOINTS_A, 0).taken
    assert intake.take("image", IMAGE_B, 0).taken               # both unstamped: the kind observed
    assert not intake.take("joints", JOINTS_B, 0).taken
    assert loop.goals == [{"image": IMAGE_A.tolist()}, {"joints": [0.1, 0.2]}, {"image": IMAGE_B.tolist()}]


def test_a_camera_and_joints_goal_is_never_the_new_image_with_the_old_joints():
    loop = GoalLog(pairs_joints=True, decodes_joints=False)
    intake = GoalIntake(loop, observes_image=True)
    first = intake.take("image", IMAGE_A, 0)
    assert not first.taken and first.warns and "waits for a new goal joints" in first.note
    assert intake.take("joints", JOINTS_A, 0).taken              # the new partner: one goal
    assert loop.goals == [{"image": IMAGE_A.tolist(), "joints": [0.1, 0.2]}]
    waiting = intake.take("image", IMAGE_B, 0)                   # unstamped: not "of one stamp"
    assert not waiting.taken and waiting.warns
    again = intake.take("image", IMAGE_B, 0)                     # the waiting image again
    assert not again.taken and again.warns
    assert intake.take("joints", JOINTS_B, 0).taken
    assert loop.goals[-1] == {"image": IMAGE_B.tolist(), "joints": [0.3, 0.4]}
    same = intake.take("joints", JOINTS_B, 0)                    # the standing goal's part again
    assert not same.taken and not same.note and len(loop.goals) == 2


def test_parts_of_one_stamp_pair_even_when_neither_is_new():
    loop = GoalLog(pairs_joints=True, decodes_joints=False)
    intake = GoalIntake(loop, observes_image=True)
    intake.take("image", IMAGE_A, 10_000_000_000)
    assert intake.take("joints", JOINTS_A, 10_000_000_000).taken
    # the image again within pair_tolerance (0.05 s) of the joints' stamp: the same goal, retaken
    assert intake.take("image", IMAGE_B, 10_040_000_000).taken
    assert loop.goals[-1]["image"] == IMAGE_B.tolist()
    assert not intake.take("image", IMAGE_A, 10_100_000_000).taken   # 0.1 s apart: waits


def test_goal_joints_alone_are_a_joint_space_goal_where_the_model_decodes_joints():
    loop = GoalLog(pairs_joints=True, decodes_joints=True)
    intake = GoalIntake(loop, observes_image=True)
    intake.take("image", IMAGE_A, 0)
    intake.take("joints", JOINTS_A, 0)
    assert intake.take("joints", JOINTS_B, 0).taken               # no new image: joints alone
    assert loop.goals[-1] == {"joints": [0.3, 0.4]}


def test_the_intake_accepts_only_the_goal_kinds_the_model_takes():
    loop = GoalLog(pairs_joints=False)
    intake = GoalIntake(loop, observes_image=False)
    loop.card, loop.image_size = SimpleNamespace(image=None, goal_joint_input=object()), 0
    assert intake.accepts("joints") and not intake.accepts("image")
    loop.card = SimpleNamespace(image=object(), goal_joint_input=None)
    assert intake.accepts("image") and not intake.accepts("joints")
    loop.card, loop.image_size = SimpleNamespace(image=None, goal_joint_input=None), 64
    assert intake.accepts("image")          # a model that encodes images its card does not name


def test_after_a_refused_goal_the_next_goal_of_either_kind_is_taken():
    """A refused goal message is the loop's goal (ERROR) until another is taken: the goal that
    stood before it must not keep a new one of the other kind out."""
    loop = GoalLog(pairs_joints=False)
    intake = GoalIntake(loop, observes_image=False)
    assert intake.take("joints", JOINTS_A, 0).taken
    intake.refuse("goal image: empty image (0x0)")
    assert intake.take("image", IMAGE_A, 0).taken           # unstamped, like the joints before
    assert loop.goals == [{"joints": [0.1, 0.2]}, {"refused": "goal image: empty image (0x0)"},
                          {"image": IMAGE_A.tolist()}]
