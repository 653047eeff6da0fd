"""Entry point: ``reloadd`` and ``python -m reloadd``."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys


def _own_package() -> None:
    """Make ``reloadd`` this file's package, not a folder of the working directory that has its name.

    ``python -m reloadd`` run next to a checkout called ``reloadd`` (which has no ``__init__.py``)
    imports that folder as a namespace package before this file runs, because the working
    directory comes first on sys.path and an editable install's finder comes after it. Every
    relative import would then fail with an ImportError.
    """
    package = sys.modules.get(__package__ or "reloadd")
    if package is None or getattr(package, "__file__", None) is not None:
        return
    del sys.modules[package.__name__]
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    importlib.import_module(package.__name__)


def main() -> None:
    _own_package()
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
