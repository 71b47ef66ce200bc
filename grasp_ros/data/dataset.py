"""Transition datasets: episodes of camera images, joint states and actions, in one file.

File format: a single ``.npz`` (or a torch ``.pt`` holding tensors and plain values only):

    images   uint8   [N, T+1, S, S, 3]   RGB frames of N episodes of T steps
    joints   float32 [N, T+1, J]         joint state at each frame (the sims': position x, y)
    actions  float32 [N, T, A]           command applied between frame t and frame t+1
    meta     JSON text                   {"env", "image_size", "max_step", "seed", "source", ...}

A file of flat transitions (``images`` [N, S, S, 3], ``next_images``, ``joints``,
``next_joints``, ``actions`` [N, A]) reads as N episodes of one step. Every problem with a file
(missing, truncated, wrong keys, shapes or dtypes, values beyond float32, pickled objects) raises
``DatasetError`` naming the file. So does one whose arrays, uncompressed, would take more than
``MEMORY_SHARE`` of the memory available (``dataset_memory_problem``): that is checked against
the sizes the file declares, before anything is decompressed.

``TransitionWindows`` cuts the episodes into overlapping windows of k steps (k+1 frames) for the
multi-step prediction loss: every window, or (``stride``) an epoch's worth whose count depends on
the transitions only, not on how they were split into episodes; ``gather`` returns a whole batch
with one indexing operation.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import pickle
import resource
import zipfile
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from ..models.archive import load_checked
from ..models.joint_states import FLOAT32_MAX

META_KEYS = ("env", "image_size", "max_step", "seed")
META_DEPTH = 32
"""Metadata nests at most this deep: JSON of 200,000 brackets ended json's parser in a RecursionError."""
MEMORY_SHARE = 0.4
"""A dataset's arrays may take at most this share of the memory available: training holds its
images twice (the file's arrays, then the train/validation split's), and the model needs the
rest. A 2.9 MB .npz of blank frames declared 3 GB of images, and training took 6.4 GB."""


class DatasetError(ValueError):
    """A dataset file or array that cannot be used, with the reason in the message."""


@dataclass
class TransitionData:
    """N episodes of T steps: images [N, T+1, S, S, 3] uint8, joints [N, T+1, J], actions [N, T, A].

    ``validate`` checks shapes, dtypes and metadata; ``save_dataset`` and ``load_dataset`` call it.
    """

    images: np.ndarray
    joints: np.ndarray
    actions: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.images = np.asarray(self.images)
        self.joints = np.asarray(self.joints, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)

    @property
    def episodes(self) -> int:
        return int(self.images.shape[0])

    @property
    def steps(self) -> int:
        return int(self.actions.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[2])

    @property
    def joint_dim(self) -> int:
        return int(self.joints.shape[2])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[2])

    @property
    def transitions(self) -> int:
        return self.episodes * self.steps

    def validate(self, source: str = "dataset") -> None:
        """Raise ``DatasetError`` naming the first inconsistent array or metadata entry."""
        im, jo, ac = self.images, self.joints, self.actions
        if im.dtype != np.uint8 or im.ndim != 5 or im.shape[-1] != 3 or im.shape[2] != im.shape[3]:
            raise DatasetError(f"{source}: images must be uint8 [N, T+1, S, S, 3], got {im.dtype} {list(im.shape)}")
        N, T1 = im.shape[:2]
        if T1 < 2 or N < 1:
            raise DatasetError(f"{source}: need at least one episode of one step, got images {list(im.shape)}")
        if jo.ndim != 3 or jo.shape[:2] != (N, T1):
            raise DatasetError(f"{source}: joints must be [N={N}, T+1={T1}, J], got {list(jo.shape)}")
        if ac.ndim != 3 or ac.shape[:2] != (N, T1 - 1):
            raise DatasetError(f"{source}: actions must be [N={N}, T={T1 - 1}, A], got {list(ac.shape)}")
        for name, values in (("joints", jo), ("actions", ac)):
            bad = np.argwhere(~np.isfinite(values))
            if len(bad):
                raise DatasetError(f"{source}: {name} must be finite, got {values[tuple(bad[0])]} at "
                                   f"{bad[0].tolist()} ({len(bad)} such value(s))")
        missing = [k for k in META_KEYS if k not in self.meta]
        if missing:
            raise DatasetError(f"{source}: metadata lacks {missing}")
        if not _whole(self.meta["image_size"]) or int(self.meta["image_size"]) != im.shape[2]:
            raise DatasetError(f"{source}: metadata says image_size {self.meta['image_size']!r}, "
                               f"images are {im.shape[2]}")
        horizon = self.meta.get("horizon")
        if horizon is not None and not (_whole(horizon) and horizon >= 0):
            raise DatasetError(f"{source}: metadata horizon must be a whole number >= 0 (0: none), got {horizon!r}")

    def split(self, val_fraction: float, seed: int) -> tuple["TransitionData", "TransitionData"]:
        """(train, validation) by whole episodes, so no validation frame is seen in training."""
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if self.episodes < 2:
            raise DatasetError(f"need at least 2 episodes for a validation split, got {self.episodes}")
        order = np.random.default_rng(seed).permutation(self.episodes)
        n_val = min(self.episodes - 1, max(1, round(val_fraction * self.episodes)))
        return self.subset(np.sort(order[n_val:])), self.subset(np.sort(order[:n_val]))

    def subset(self, episodes) -> "TransitionData":
        return TransitionData(self.images[episodes], self.joints[episodes], self.actions[episodes],
                              dict(self.meta))


def save_dataset(data: TransitionData, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` (.npz compressed, or .pt); the write is atomic (temp + rename)."""
    path = os.fspath(path)
    data.validate(f"dataset {path!r}")
    tmp = f"{path}.tmp{os.getpid()}"
    meta = json.dumps(data.meta)
    try:
        if path.endswith(".pt"):
            torch.save({"images": torch.from_numpy(data.images), "joints": torch.from_numpy(data.joints),
                        "actions": torch.from_numpy(data.actions), "meta": meta}, tmp)
        elif path.endswith(".npz"):
            with open(tmp, "wb") as f:
                np.savez_compressed(f, images=data.images, joints=data.joints, actions=data.actions,
                                    meta=np.array(meta))
        else:
            raise DatasetError(f"dataset path {path!r} must end in .npz or .pt")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_dataset(path: str | os.PathLike) -> TransitionData:
    """Read a dataset file written by ``save_dataset`` (or a flat-transition file)."""
    path = os.fspath(path)
    source = f"dataset {path!r}"
    if not os.path.isfile(path):
        raise DatasetError(f"{source}: file not found")
    arrays = _read_arrays(path, source)
    if "next_images" in arrays:
        arrays = _episodes_from_flat(arrays, source)
    missing = [k for k in ("images", "joints", "actions", "meta") if k not in arrays]
    if missing:
        raise DatasetError(f"{source}: missing {missing} (has {sorted(arrays)})")
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{source}: metadata is not JSON ({exc})") from exc
    except RecursionError as exc:
        raise DatasetError(f"{source}: metadata nests too deep to read (at most {META_DEPTH} levels)") from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{source}: metadata must be a JSON object, got {type(meta).__name__}")
    if _depth(meta) > META_DEPTH:
        raise DatasetError(f"{source}: metadata nests more than {META_DEPTH} levels deep")
    for name in ("joints", "actions"):
        _check_float32_range(arrays[name], f"{source}: {name}")
    try:
        data = TransitionData(arrays["images"], arrays["joints"], arrays["actions"], meta)
    except (TypeError, ValueError) as exc:   # e.g. joints of strings
        raise DatasetError(f"{source}: {exc}") from exc
    data.validate(source)
    return data


def _read_arrays(path: str, source: str) -> dict[str, Any]:
    """All arrays, read eagerly so that a truncated member fails here and not mid-training, after
    the sizes the file declares are checked (``_check_declared_sizes``)."""
    try:
        _check_declared_sizes(path, source)
        if path.endswith(".pt"):
            raw = load_checked(path)
            if not isinstance(raw, dict):
                raise DatasetError(f"{source}: holds a {type(raw).__name__}, expected a dict of arrays")
            return {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in raw.items()}
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except DatasetError:
        raise
    except pickle.UnpicklingError as exc:   # torch.load(weights_only=True) refused it: never unpickled
        found = next((line for line in str(exc).splitlines() if "global" in line.lower()), "")
        raise DatasetError(f"{source}: holds Python objects, not only tensors and plain values, and is "
                           f"not loaded (a dataset .pt holds arrays and metadata text){': ' if found else ''}"
                           f"{found[:200]}") from exc
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError, KeyError, RecursionError) as exc:
        raise DatasetError(f"{source}: cannot read the file; it may be truncated or not a dataset "
                           f"({type(exc).__name__}: {str(exc)[:200]})") from exc


def _check_declared_sizes(path: str, source: str) -> None:
    """Refuse a file whose arrays would not fit in memory, by the sizes it declares, before
    reading them: numpy allocates an .npy's declared shape before it reads a byte (a 7.5 KB .npz
    claiming images of [1e9, 25, 64, 64, 3] ended in a 279 TiB MemoryError), and a deflated zip
    entry of zeros is a thousand times its size on disk."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            declared = sum(entry.file_size for entry in entries)   # what reading them can produce
            if (problem := dataset_memory_problem(declared)) is not None:
                raise DatasetError(f"{source}: its arrays declare {problem}")
            for entry in entries if not path.endswith(".pt") else ():
                if entry.filename.endswith(".npy"):
                    with archive.open(entry) as member:
                        _check_npy_header(member, entry, source)
    elif path.endswith(".pt"):   # torch's legacy format: stored, not compressed
        if (problem := dataset_memory_problem(os.path.getsize(path))) is not None:
            raise DatasetError(f"{source}: its arrays take {problem}")
    else:   # numpy would read it as one .npy, not a dataset
        raise DatasetError(f"{source}: cannot read the file; it may be truncated or not a dataset "
                           "(not a zip archive, as an .npz is)")


def _check_npy_header(member, entry: zipfile.ZipInfo, source: str) -> None:
    """An .npy entry's declared shape and dtype against the bytes the entry holds."""
    version = np.lib.format.read_magic(member)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(member)
    header = member.tell()
    needed = math.prod(shape) * dtype.itemsize
    if needed > entry.file_size - header:
        raise DatasetError(f"{source}: entry {entry.filename!r} declares an array {list(shape)} of {dtype} "
                           f"({needed:,} bytes) but holds {entry.file_size - header:,}: truncated or not a "
                           "dataset")


def available_memory() -> Optional[int]:
    """Bytes this process may still allocate, as far as Linux says: the memory available, within
    the address-space limit (ulimit -v) and a cgroup's limit; None where nothing says."""
    limits = []
    meminfo = _read_fields("/proc/meminfo")
    if "MemAvailable" in meminfo:
        limits.append(meminfo["MemAvailable"])
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    status = _read_fields("/proc/self/status")
    if soft != resource.RLIM_INFINITY and "VmSize" in status:
        limits.append(max(0, soft - status["VmSize"]))
    try:
        with open("/sys/fs/cgroup/memory.max") as f_max, open("/sys/fs/cgroup/memory.current") as f_now:
            cap = f_max.read().strip()
            if cap != "max":
                limits.append(max(0, int(cap) - int(f_now.read())))
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None


def dataset_memory_problem(nbytes: int) -> Optional[str]:
    """Why a dataset of ``nbytes`` (its arrays, uncompressed) is too large for this machine, or
    None; the reason starts with its size."""
    available = available_memory()
    if available is None or nbytes <= MEMORY_SHARE * available:
        return None
    return (f"{_size(nbytes)} uncompressed, more than {MEMORY_SHARE:.0%} of the memory available "
            f"({_size(available)}), which training needs to hold it twice and train: a smaller dataset "
            f"(fewer episodes, smaller images), or a machine with {_size(nbytes / MEMORY_SHARE)} free")


def _size(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.3g} MiB"


def _read_fields(path: str) -> dict[str, int]:
    """``Name: value kB`` lines of a /proc file, in bytes; empty where the file is not there."""
    fields = {}
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(":")
                parts = value.split()
                if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                    fields[name] = int(parts[0]) * 1024
    except OSError:
        pass
    return fields


def _check_float32_range(values, what: str) -> None:
    """Refuse values that the model's float32 would turn into infinities."""
    values = np.asarray(values)
    if values.dtype.kind != "f" or values.dtype.itemsize <= 4:
        return
    finite = np.abs(values[np.isfinite(values)])
    limit = FLOAT32_MAX
    if finite.size and float(finite.max()) > limit:
        raise DatasetError(f"{what} reach {float(finite.max()):.3g}, beyond float32's range (+-{limit:.3g}), in "
                           f"which the model computes ({int((finite > limit).sum())} such value(s))")


def _whole(value: Any) -> bool:
    """A finite number without a fraction (not a bool): what JSON gives for a count."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            and float(value).is_integer())


def _depth(value: Any) -> int:
    """How deep ``value`` (JSON: dicts and lists) nests, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _episodes_from_flat(arrays: dict[str, Any], source: str) -> dict[str, Any]:
    missing = [k for k in ("images", "next_images", "joints", "next_joints", "actions") if k not in arrays]
    if missing:
        raise DatasetError(f"{source}: flat transitions need {missing}")
    shapes = {k: arrays[k].shape for k in ("images", "next_images", "joints", "next_joints", "actions")}
    if (shapes["images"] != shapes["next_images"] or shapes["joints"] != shapes["next_joints"]
            or len({s[0] for s in shapes.values()}) != 1 or len(shapes["actions"]) != 2):
        raise DatasetError(f"{source}: flat transition arrays disagree: { {k: list(s) for k, s in shapes.items()} }")
    return {"images": np.stack([arrays["images"], arrays["next_images"]], 1),
            "joints": np.stack([arrays["joints"], arrays["next_joints"]], 1),
            "actions": arrays["actions"][:, None], "meta": arrays.get("meta", "{}")}


class TransitionWindows(torch.utils.data.Dataset):
    """Windows of ``steps`` consecutive transitions inside one episode.

    Without ``stride``: every window, one per start in each episode (N x (T - k + 1)), as
    evaluation wants. With ``stride``: ``max(N, ceil(N x T / stride))`` windows, shared out
    evenly between the episodes, their starts spread evenly from each episode's first start to
    its last (a start repeats when an episode has fewer starts than its share). The count then
    follows the transitions, not how a recording was cut into episodes, and every transition
    weighs the same in an epoch however long its episode. (The trainer's stride is s - k + 1: a
    segment of s steps holds s - k + 1 rollout starts, so an epoch starts about one rollout per
    transition.)

    Item i is a dict: ``images`` uint8 [k+1, S, S, 3], ``joints`` [k+1, J], ``actions`` [k, A].
    ``gather(indices [B])`` returns the same keys batched ([B, k+1, ...]) in one indexing call.
    """

    def __init__(self, data: TransitionData, steps: int, stride: Optional[int] = None, history: int = 1):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if steps > data.steps:
            raise DatasetError(f"windows of {steps} steps do not fit episodes of {data.steps} steps")
        if stride is not None and stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        self.steps, self.history = int(steps), int(history)
        self.images = torch.from_numpy(data.images)
        self.joints = torch.from_numpy(data.joints)
        self.actions = torch.from_numpy(data.actions)
        N, starts = data.episodes, data.steps - self.steps + 1
        total = N * starts if stride is None else max(N, -(-data.transitions // stride))
        bounds = np.arange(N + 1) * total // N                  # episode e owns [bounds[e], bounds[e+1])
        episode = np.repeat(np.arange(N), np.diff(bounds))
        share = np.diff(bounds)[episode]
        j = np.arange(total) - bounds[episode]
        # j-th of `share` starts spread over 0..starts-1, rounded half up; share == starts: j itself
        spread = (2 * j * (starts - 1) + share - 1) // np.maximum(2 * (share - 1), 1)
        offset = np.where(share > 1, spread, (starts - 1) // 2)
        self._episode = torch.from_numpy(episode).long()
        self._start = torch.from_numpy(offset).long()
        self._offsets = torch.arange(self.steps + 1)

    def __len__(self) -> int:
        return len(self._episode)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        batch = self.gather(torch.tensor([index % len(self)]))
        return {k: v[0] for k, v in batch.items()}

    def frame_index(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(episode [B, 1], frame [B, k+1]): index any per-frame array [N, T+1, ...] by window."""
        return self._episode[indices].unsqueeze(1), self._start[indices].unsqueeze(1) + self._offsets

    def gather(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        episode, frames = self.frame_index(indices)
        return {"images": self.stacked_images(episode, frames), "joints": self.joints[episode, frames],
                "actions": self.actions[episode, frames[:, :-1]]}

    def stacked_images(self, episode: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Images of (episode, frame) index arrays of one shape [...]: [..., S, S, 3], or with
        ``history`` K > 1 each frame with the K - 1 before it, oldest first, [..., K, S, S, 3].
        An episode's first frames repeat its first frame (as a controller's history starts)."""
        if self.history == 1:
            return self.images[episode, frames]
        back = torch.arange(self.history - 1, -1, -1)
        return self.images[episode.unsqueeze(-1), (frames.unsqueeze(-1) - back).clamp(min=0)]


def dataset_summary(data: TransitionData) -> str:
    """One line for logs: sizes and where the data came from."""
    mb = data.images.nbytes / 2**20
    step = data.meta.get("max_step")
    step_text = f", max_step {step:.4g}" if isinstance(step, (int, float)) and math.isfinite(step) else ""
    return (f"{data.episodes} episodes x {data.steps} steps = {data.transitions} transitions, "
            f"images {data.image_size}px ({mb:.0f} MiB), J={data.joint_dim}, A={data.action_dim}, "
            f"env {data.meta.get('env')!r}{step_text}")
