"""Writing a file so that readers see the old one or the whole new one, never half of it.

Standard library only, Python 3.10+: runs on managed hosts.
"""

from __future__ import annotations

import os
import tempfile


def write_text_atomic(path: str, text: str, mode: int) -> None:
    """Write text to path with the given mode, through a temporary file in the same folder and a rename.

    Raise OSError on failure; the temporary file is removed then.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".vllm-fleet.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
