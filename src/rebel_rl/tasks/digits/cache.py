"""Folders written once and kept: the pre-trained denoiser and the digit classifier."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def save_atomically(target: Path, write: Callable[[str], object]) -> Path:
    """Call `write(tmp_folder)`, then move the folder to `target`; keep an existing target (another
    process finished first) and never leave a half-written one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(str(tmp))
        if target.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
