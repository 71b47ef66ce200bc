"""The planar arm: a MuJoCo robot with three velocity-commanded joints, two posts and a 96 x 72
top-down camera (``env.py`` says what it does, ``arm.xml`` what it is)."""
from .env import (ACTION_HIGH, ACTION_LOW, IMAGE_HEIGHT, IMAGE_WIDTH, JOINT_HIGH, JOINT_LOW,
                  JOINT_NAMES, ArmEnv, ArmObservation, ArmTask)

__all__ = ["ACTION_HIGH", "ACTION_LOW", "IMAGE_HEIGHT", "IMAGE_WIDTH", "JOINT_HIGH", "JOINT_LOW",
           "JOINT_NAMES", "ArmEnv", "ArmObservation", "ArmTask"]
