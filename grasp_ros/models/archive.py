"""The CRC-32 check of torch's zip files (checkpoints, weights, TorchScript) before they load.

Every entry of the zip archive ``torch.save`` and ``torch.jit.save`` write carries a CRC-32, and
torch's reader does not check it: a checkpoint with bytes changed inside a weight tensor (a bad
copy, a disk error) loaded, finite and silent, and the controller would plan with weights nobody
trained. Python's ``zipfile`` reads every entry against its CRC: 30 ms for a 100 MB file here.
"""
from __future__ import annotations

import os
import zipfile
from typing import Any

import torch


class DamagedArchive(ValueError):
    """A torch file whose zip structure or CRC-32s say it changed after it was written, or whose
    directory claims more than the file holds."""


def check_archive(path: str | os.PathLike) -> None:
    """Raise DamagedArchive naming the first entry of the zip archive ``path`` whose bytes do
    not match its CRC-32. A file that is not a zip archive (torch's legacy format, or not a
    torch file at all) passes: torch's own reader then says what it is."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            _check_directory(archive.infolist(), os.path.getsize(path))
            bad = archive.testzip()
    except DamagedArchive:
        raise
    except Exception as exc:  # noqa: BLE001 -- zipfile raises many kinds for a changed directory
        raise DamagedArchive(f"damaged: its zip structure does not read ({type(exc).__name__}: "
                             f"{exc})") from exc
    if bad is not None:
        raise DamagedArchive(f"damaged: its entry {bad!r} fails its CRC-32 (the file changed after "
                             "it was written: a bad copy, a disk error, an edit)")


def _check_directory(entries: list[zipfile.ZipInfo], size: int) -> None:
    """torch writes each entry once, tensors uncompressed (TorchScript deflates only its code),
    so the entries declare little more than the file's bytes: a directory that lists one twice,
    or claims far more, makes reading cost what the file does not hold (an adversarial audit: a
    3.7 MB file of one deflated entry declared 3 GB and torch allocated them; 1.7 MB listing a
    1 GB entry 300 times took the CRC check 11 minutes)."""
    names = set()
    for entry in entries:
        if entry.filename in names:
            raise DamagedArchive(f"malformed: its entry {entry.filename!r} is listed twice")
        names.add(entry.filename)
    declared, most = sum(entry.file_size for entry in entries), 2 * size + 2**20
    if declared > most:
        raise DamagedArchive(f"malformed: its entries declare {declared} bytes, more than twice the "
                             f"file's {size} (torch stores tensors uncompressed)")


def load_checked(path: str | os.PathLike) -> Any:
    """A checkpoint, weights or dataset file: checked (``check_archive``), then
    ``torch.load(weights_only=True)`` onto the CPU, so no object is ever unpickled."""
    check_archive(path)
    return torch.load(path, map_location="cpu", weights_only=True)
