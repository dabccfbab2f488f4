"""Atomic file writes: a file appears whole under its name, or not at all."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_file(path: Path, temp: Path) -> Iterator[BinaryIO]:
    """Write to ``temp`` (same folder, a name History recognises as unfinished); when the block ends
    without error the data is flushed to disk and ``temp`` renamed over ``path``; otherwise ``temp``
    is removed and the error goes on."""
    try:
        with open(temp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
