"""A file's signature (mtime, size, inode): how the watcher and the control server tell that a file they
reported or saw committed was written again since, rather than heard a second time."""

from __future__ import annotations

import os
from typing import Optional

FileSignature = tuple[int, int, int]  # st_mtime_ns, st_size, st_ino


def file_signature(path: str) -> Optional[FileSignature]:
    """The signature of ``path`` now; None when it cannot be stat'ed (gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
