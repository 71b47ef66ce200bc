"""Rosbag replay testing: feed a recorded run's inputs into a real controller, compare commands.

``grasp-ros replay BAG`` (``grasp_ros/commands/replay.py``) is the front end. The rooms here:
``bag`` reads and checks a recording, ``settings`` settles the replayed controller's parameters,
``schedule`` decides which inputs precede each cycle, ``driver`` runs the controller process in
lock step over DDS (it imports rclpy, like the sim room's closed-loop harness), ``compare`` and
``report`` say how the replay differs from the recording, and ``run`` ties them together.
"""
from .bag import BagError, Recording, read_recording
from .compare import Tolerances
from .driver import ReplayError
from .run import ReplayOptions, prepare, replay

__all__ = ["BagError", "Recording", "ReplayError", "ReplayOptions", "Tolerances", "prepare",
           "read_recording", "replay"]
