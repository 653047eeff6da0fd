"""Entry point: ``reloadd`` and ``python -m reloadd``."""

from __future__ import annotations

import sys


def main() -> None:
    from .app import main as app_main

    sys.exit(app_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
