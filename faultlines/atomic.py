"""Atomic file writes: a file is either its old self or wholly new, never half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_file(path: str | Path, content: bytes | str) -> Path:
    """Write one file atomically: to a temporary name beside it, then renamed into place."""
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; these are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
