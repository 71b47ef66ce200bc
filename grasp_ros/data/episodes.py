"""Cutting a recorded stream of frames into the equal-length episodes of a ``TransitionData``.

A stream is F frames in time order and, for each transition i -> i+1, whether it may be learned
from (``keep`` [F-1]: false where the recording paused, the robot was reset, an episode ended).
Runs of kept transitions are segments. With ``steps`` each segment is cut into episodes of that
many transitions; consecutive episodes share their boundary frame, so no transition inside a
segment is lost, and what is left at a segment's end (fewer than ``steps``) is dropped. Without
``steps`` every segment is one episode. Pure numpy.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def segments(keep: np.ndarray) -> list[tuple[int, int]]:
    """(first frame, last frame) of each run of kept transitions, in order; runs of no
    transition (a frame cut off on both sides) are left out."""
    keep = np.asarray(keep, bool)
    edges = np.diff(np.concatenate([[0], keep.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a), int(b)) for a, b in zip(starts, ends)]   # transitions a..b-1: frames a..b


def episode_starts(runs: list[tuple[int, int]], steps: Optional[int]) -> list[tuple[int, int]]:
    """(first frame, transitions) of each episode cut from ``runs``: episodes of ``steps``
    transitions, or each whole run when ``steps`` is None."""
    if steps is None:
        return [(a, b - a) for a, b in runs]
    if steps < 1:
        raise ValueError(f"episode steps must be >= 1, got {steps}")
    return [(a + k * steps, steps) for a, b in runs for k in range((b - a) // steps)]


def frames_used(frame_count: int, episodes: list[tuple[int, int]]) -> int:
    """How many of the stream's frames lie in some episode."""
    used = np.zeros(frame_count, bool)
    for first, steps in episodes:
        used[first:first + steps + 1] = True
    return int(used.sum())


def gather(values: np.ndarray, episodes: list[tuple[int, int]], per_transition: bool = False) -> np.ndarray:
    """[E, T+1, ...] of per-frame ``values`` (or [E, T, ...] of per-transition ones) for episodes
    of equal length T, copied into one preallocated array."""
    if not episodes:
        return np.empty((0, 0, *values.shape[1:]), values.dtype)
    steps = episodes[0][1]
    length = steps if per_transition else steps + 1
    out = np.empty((len(episodes), length, *values.shape[1:]), values.dtype)
    for e, (first, _) in enumerate(episodes):
        out[e] = values[first:first + length]
    return out
