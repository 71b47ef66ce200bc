"""What the commands check of the files they are told to write, before any work."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional


def missing_folder(out) -> Optional[str]:
    """Why ``out`` cannot be written because its folder does not exist, or None: said before the
    work, not as a traceback after minutes of it."""
    parent = Path(out).parent
    return None if parent.is_dir() else f"folder {str(parent)!r} does not exist (to write {str(out)!r})"


def unwritable(out, suffixes: tuple[str, ...], option: str = "--out") -> Optional[str]:
    """Why the file ``out`` cannot be written, or None: its folder is missing or refuses a new
    file, it is a folder or another thing than a file, or its name does not end in one of
    ``suffixes``. Said before the work: torch and numpy said it after the work, as tracebacks,
    and left their temp files behind."""
    text = os.fspath(out)
    if (reason := missing_folder(text)) is not None:
        return f"{option}: {reason}"
    kinds = " or ".join(suffixes)
    if os.path.isdir(text) or text.endswith(("/", os.sep)):
        return f"{option} {text!r} is a folder: give a file name ending in {kinds}"
    if os.path.exists(text) and not os.path.isfile(text):
        return f"{option} {text!r} exists and is not a file"
    if not text.endswith(suffixes):
        return f"{option} {text!r} must end in {kinds}"
    folder = str(Path(text).parent)
    try:   # the one test that every file system answers truly (/proc: a folder, writable by mode)
        handle, probe = tempfile.mkstemp(prefix=f".{Path(text).name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        return f"{option}: cannot write a file in folder {folder!r} ({exc.strerror or exc})"
    os.close(handle)
    os.remove(probe)
    return None
