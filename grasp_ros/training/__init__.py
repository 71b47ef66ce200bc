"""Training of the learned world model (pure torch, no ROS)."""
from .trainer import (TrainSettings, evaluate, export_torchscript, input_statistics, resolve_device,
                      save_checkpoint, train, window_losses)

__all__ = ["TrainSettings", "evaluate", "export_torchscript", "input_statistics", "resolve_device",
           "save_checkpoint", "train", "window_losses"]
