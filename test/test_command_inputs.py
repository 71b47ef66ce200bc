"""``grasp-ros train`` and ``collect`` refuse what they cannot use with exit 2 and one line, before
any work, and leave no file behind: findings of an adversarial audit (datasets, output paths,
options, a run whose loss went NaN)."""
from __future__ import annotations

import io
import json
import os
import struct
import zipfile

import numpy as np
import pytest
import torch

from grasp_ros.cli import main as cli
from grasp_ros.data import DatasetError, collect_episodes, load_dataset
from grasp_ros.data import dataset as dataset_module
from grasp_ros.models.learned import LatentWorldModel
from grasp_ros.sim import make_env
from grasp_ros.training import export_torchscript, save_checkpoint

TINY = ["--quiet", "--threads", "1", "--epochs", "1", "--batch-size", "2", "--segment-steps", "4",
        "--rollout-steps", "2", "--val-windows", "4", "--dynamics-steps", "2", "--statistics-frames", "8",
        "--latent-dim", "8", "--hidden", "16", "--channels", "4", "4", "4"]


@pytest.fixture(scope="module")
def arrays() -> dict:
    """A dataset of 4 episodes of 4 steps of 16 px frames, as the arrays of its file."""
    data = collect_episodes(make_env("wall_door", 50, image_size=16), episodes=4, steps=4, seed=0, progress=False)
    return {"images": data.images, "joints": data.joints, "actions": data.actions,
            "meta": np.array(json.dumps(data.meta))}


def _write(path, arrays, **changed):
    np.savez(path, **{**arrays, **changed})
    return str(path)


def _npy_header(shape, descr="|u1") -> bytes:
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()


class Unsafe:
    """Anything torch.load(weights_only=True) will not build."""


def _files(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_a_diverging_run_stops_at_the_first_non_finite_loss_and_writes_nothing(arrays, tmp_path, capsys):
    """Joints of +-3e38 (finite in float32, their squares not): the loss went NaN in the first
    step, the run wrote a checkpoint of NaN weights every epoch, then failed at the statistics."""
    joints = arrays["joints"].copy()
    joints[0, 0, 0], joints[1, 0, 0] = 3e38, -3e38
    data = _write(tmp_path / "huge.npz", arrays, joints=joints)
    out = tmp_path / "out" / "m.pt"
    out.parent.mkdir()
    assert cli(["train", "--data", data, "--out", str(out), *TINY]) == 2
    error = capsys.readouterr().err
    assert "epoch 1, step 1 of" in error and "not finite" in error
    assert "float32" in error and "joints reach 3e+38" in error and "learning rate too high (--lr" in error
    assert "no checkpoint written" in error
    assert _files(out.parent) == []


def test_values_beyond_float32_or_not_finite_are_refused_at_load_naming_the_array(arrays, tmp_path):
    beyond = arrays["joints"].astype(np.float64)
    beyond[2, 1, 0] = 1e300     # float32 made it inf, and the error named neither array nor value
    with pytest.raises(DatasetError, match=r"huge\.npz'.*: joints reach 1e\+300, beyond float32's range"):
        load_dataset(_write(tmp_path / "huge.npz", arrays, joints=beyond))
    actions = arrays["actions"].copy()
    actions[1, 2, 1] = np.nan
    with pytest.raises(DatasetError, match=r"actions must be finite, got nan at \[1, 2, 1\]"):
        load_dataset(_write(tmp_path / "nan.npz", arrays, actions=actions))


def _meta(arrays, **changed):
    return np.array(json.dumps({**json.loads(str(arrays["meta"])), **changed}))


def _huge_shape(path, arrays):
    """An .npz whose images.npy claims [1e9, 5, 16, 16, 3] in 100 bytes: numpy allocated that first."""
    with zipfile.ZipFile(path, "w") as archive:
        for key in ("joints", "actions", "meta"):
            buffer = io.BytesIO()
            np.save(buffer, arrays[key])
            archive.writestr(f"{key}.npy", buffer.getvalue())
        archive.writestr("images.npy", _npy_header((10**9, 5, 16, 16, 3)) + bytes(100))
    return str(path)


def _pickled(path, arrays):
    torch.save({"images": torch.from_numpy(arrays["images"]), "meta": Unsafe()}, path)
    return str(path)


def _one_npy(path, arrays):
    with open(path, "wb") as f:      # np.load took it for an array, without a context manager: TypeError
        np.save(f, arrays["joints"])
    return str(path)


BAD_FILES = {
    "image_size text": (lambda p, a: _write(p, a, meta=_meta(a, image_size="abc")), "image_size 'abc'"),
    "image_size null": (lambda p, a: _write(p, a, meta=_meta(a, image_size=None)), "image_size None"),
    "image_size inf": (lambda p, a: _write(p, a, meta=_meta(a, image_size=float("inf"))), "image_size inf"),
    "horizon text": (lambda p, a: _write(p, a, meta=_meta(a, horizon="abc")), "horizon must be a whole number"),
    "joint names a number": (lambda p, a: _write(p, a, meta=_meta(a, joint_names=7)), "does not describe a model"),
    "metadata 100,000 deep": (lambda p, a: _write(p, a, meta=np.array("[" * 100_000 + "]" * 100_000)),
                              "metadata nests too deep"),
    "metadata 40 deep": (lambda p, a: _write(p, a, meta=_meta(a, x=json.loads("[" * 40 + "]" * 40))),
                         "metadata nests more than 32 levels"),
    "declared shape": (_huge_shape, "'images.npy' declares an array [1000000000, 5, 16, 16, 3]"),
    "pickled object": (_pickled, "holds Python objects"),
    "one .npy": (_one_npy, "not a zip archive"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_dataset_files_are_refused_with_exit_2(arrays, tmp_path, capsys, case):
    make, expected = BAD_FILES[case]
    path = make(tmp_path / ("d.pt" if case == "pickled object" else "d.npz"), arrays)
    assert cli(["train", "--data", path, "--out", str(tmp_path / "m.pt"), *TINY]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"dataset {path!r}" in error and expected in error, error
    assert not (tmp_path / "m.pt").exists()


def test_a_dataset_larger_than_memory_allows_is_refused_by_its_declared_size(tmp_path, capsys, monkeypatch):
    """A 2.9 MB .npz of blank frames declared 3 GB: by the sizes in its zip directory, unread."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images.npy", _npy_header((1024, 5, 16, 16, 3)) + bytes(1024 * 5 * 16 * 16 * 3))
    assert path.stat().st_size < 100_000
    monkeypatch.setattr(dataset_module, "available_memory", lambda: 8 * 2**20)
    assert cli(["train", "--data", str(path), "--out", str(tmp_path / "m.pt"), *TINY]) == 2
    error = capsys.readouterr().err
    assert "its arrays declare 3.75 MiB uncompressed, more than 40% of the memory available (8 MiB)" in error


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "folder").mkdir()
    return tmp_path / "folder"


TRAIN_OUTPUTS = {
    "out a folder": (["--out", "{folder}"], "--out '{folder}' is a folder"),
    "out a folder's name": (["--out", "{folder}/"], "is a folder: give a file name ending in .pt"),
    "out in /proc": (["--out", "/proc/m.pt"], "--out: cannot write a file in folder '/proc'"),
    "out of another kind": (["--out", "{folder}/m.txt"], "must end in .pt"),
    "export in a missing folder": (["--out", "{folder}/m.pt", "--export", "/nonexistent_dir/m.ts"],
                                   "--export: folder '/nonexistent_dir' does not exist"),
    "export a folder": (["--out", "{folder}/m.pt", "--export", "{folder}"], "--export '{folder}' is a folder"),
    "export over the checkpoint": (["--out", "{folder}/m.pt", "--export", "{folder}/m.pt"],
                                   "would overwrite the checkpoint"),
    "out over the data": (["--out", "{folder}/missing.npz"], "would overwrite the dataset"),
}


@pytest.mark.parametrize("case", list(TRAIN_OUTPUTS))
def test_train_output_paths_are_checked_before_any_work(folder, capsys, case):
    """The dataset does not even exist: the output is what is refused. Before, a folder or /proc
    failed after the whole training with a traceback, leaving a temp file."""
    if "/proc" in case and not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    args, expected = TRAIN_OUTPUTS[case]
    args = [a.format(folder=folder) for a in args]
    assert cli(["train", "--data", str(folder / "missing.npz"), *args, *TINY]) == 2
    error = capsys.readouterr().err
    assert expected.format(folder=folder) in error and "not found" not in error, error
    assert _files(folder) == []


@pytest.mark.parametrize("out, expected", [("{folder}", "--out '{folder}' is a folder"),
                                           ("/proc/x.npz", "cannot write a file in folder '/proc'"),
                                           ("{folder}/x.txt", "must end in .npz or .pt")])
def test_collect_output_paths_are_checked_before_collecting(folder, capsys, monkeypatch, out, expected):
    if out.startswith("/proc") and not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    monkeypatch.setattr("grasp_ros.data.collect_episodes", _no_collecting)
    assert cli(["collect", "--episodes", "1", "--steps", "1", "--image-size", "16", "--quiet",
                "--out", out.format(folder=folder)]) == 2
    assert expected.format(folder=folder) in capsys.readouterr().err
    assert _files(folder) == []


def _no_collecting(*args, **kwargs):
    raise AssertionError("collected before the options were checked")


def test_a_failed_write_leaves_no_temp_file(folder):
    model = LatentWorldModel(image_size=16, latent_dim=4, hidden=8, channels=[2, 2, 2])
    with pytest.raises(IsADirectoryError):
        save_checkpoint(str(folder), model)
    with pytest.raises(IsADirectoryError):
        export_torchscript(model, str(folder))
    assert _files(folder.parent) == ["folder"]


@pytest.mark.parametrize("option, expected", [
    (["--threads", "-1"], "--threads must be in [0, 1024], got -1"),
    (["--hidden", "0"], "--hidden must be in [1, 4096], got 0"),
    (["--hidden", "200000"], "--hidden must be in [1, 4096], got 200000"),
    (["--channels", "0", "0", "0"], "--channels must be in [1, 4096], got 0 0 0"),
    (["--grad-clip", "nan"], "grad_clip must be finite, got nan"),
    (["--weight-decay", "-1"], "weight_decay and grad_clip (0: no clipping) must be >= 0"),
])
def test_train_options_out_of_range_are_refused_before_the_data_loads(tmp_path, capsys, option, expected):
    assert cli(["train", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "m.pt"),
                *TINY, *option]) == 2
    error = capsys.readouterr().err
    assert expected in error and "not found" not in error, error


@pytest.mark.parametrize("option, expected", [
    (["--image-size", "100000"], "--image-size must be in [16, 512] pixels, got 100000"),
    (["--horizon", "0"], "--horizon must be >= 1, got 0"),
    (["--episodes", "1000000000"], "1000000000 episodes of 1 steps of 16 px frames take"),
])
def test_collect_options_out_of_range_are_refused_before_collecting(tmp_path, capsys, monkeypatch, option,
                                                                    expected):
    monkeypatch.setattr("grasp_ros.data.collect_episodes", _no_collecting)
    assert cli(["collect", "--episodes", "1", "--steps", "1", "--image-size", "16", "--quiet",
                "--out", str(tmp_path / "x.npz"), *option]) == 2
    assert expected in capsys.readouterr().err
    assert _files(tmp_path) == []
