"""Training data for world models: the dataset file, simulator exploration, rosbag2 import."""
from .dataset import (DatasetError, TransitionData, TransitionWindows, dataset_summary, load_dataset,
                      save_dataset)
from .exploration import ExplorationSettings, SmoothedRandomPolicy, collect_episodes

__all__ = ["DatasetError", "ExplorationSettings", "SmoothedRandomPolicy", "TransitionData",
           "TransitionWindows", "collect_episodes", "dataset_summary", "load_dataset", "save_dataset"]
