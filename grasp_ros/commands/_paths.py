"""What the commands check of the files they are told to write, before any work."""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def missing_folder(out) -> Optional[str]:
    """Why ``out`` cannot be written because its folder does not exist, or None: said before the
    work, not as a traceback after minutes of it."""
    parent = Path(out).parent
    return None if parent.is_dir() else f"folder {str(parent)!r} does not exist (to write {str(out)!r})"
