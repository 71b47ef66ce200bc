"""Training of the learned world model (pure torch, no ROS)."""
from .trainer import (TrainingDiverged, TrainSettings, evaluate, export_torchscript, input_statistics,
                      resolve_device, save_checkpoint, train, window_losses)

__all__ = ["TrainingDiverged", "TrainSettings", "evaluate", "export_torchscript", "input_statistics",
           "resolve_device", "save_checkpoint", "train", "window_losses"]
