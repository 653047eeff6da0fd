"""Runs the installed reloadd with inotify failing as the kernel makes it fail at the watch limit.

    python inotify_fails.py ERRNO_NAME RELOADD_SCRIPT ARGS...

Where the limit cannot really be lowered (no user namespaces), the tests run reloadd through this
wrapper: the same program, process and fallback path, with every new inotify instance refused
with ERRNO_NAME (e.g. ENOSPC) before it is made.
"""

from __future__ import annotations

import errno
import os
import sys

from reloadd.host.watch import inotify

code = getattr(errno, sys.argv[1])


def refused(self: inotify.Inotify) -> None:
    raise OSError(code, os.strerror(code))


inotify.Inotify.__init__ = refused  # type: ignore[method-assign]
sys.argv = ["reloadd", *sys.argv[3:]]  # drop the errno name and the console script path
from reloadd.__main__ import main  # noqa: E402 - after the patch, as reloadd starts

main()
