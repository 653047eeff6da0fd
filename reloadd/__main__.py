"""Entry point: ``reloadd`` and ``python -m reloadd``."""

from __future__ import annotations

import contextlib
import os
import sys


def main() -> None:
    from .app import main as app_main

    code = app_main(sys.argv[1:])
    # By now every child is reaped and every file reloadd wrote is closed; what is left is the
    # interpreter's teardown of pydantic and the rest (~20 ms measured), which a pod
    # waiting for its container to stop has no use for. So flush and leave.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing to save
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
