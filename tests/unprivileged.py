"""A copy of reloadd that an unprivileged user can run, wherever the checkout lives.

Some tests need a directory reloadd may not read, so reloadd must run as a user other than root.
That user may be unable to reach the test venv: a clone inside a ``mktemp -d`` folder (mode 0700)
is out of its reach, and so is a pyenv interpreter under root's home, whose ``libpython`` the
loader then cannot find. So those tests run a copy, built once per session in a temporary
directory every user may read: the interpreter, its standard library, reloadd and the
distributions reloadd requires. Nothing is installed and nothing outside the copy changes.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from fs_support import NOBODY

COPY_TIMEOUT = 60.0  # seconds the import probe and the launch check may each take
# Parts of the standard library reloadd never imports: the copy skips them (they are most of its size).
STDLIB_SKIPPED = (
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "config-*",
    "*.opt-1.pyc",
    "*.opt-2.pyc",
)
# Prints, as JSON, where reloadd's package is and every file of the distributions it requires,
# however deep (their RECORD lists them), by path relative to site-packages. From the metadata rather
# than from what an import pulls in: reloadd imports some packages only when it needs them.
PROBE = """
import importlib.metadata, json, re
from pathlib import Path
from typing import Any
from packaging.requirements import Requirement
import reloadd
todo, seen, files = ["reloadd"], set(), {}
while todo:
    name = todo.pop()
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        continue
    seen.add(key)
    dist = importlib.metadata.distribution(name)
    for text in dist.requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            todo.append(requirement.name)
    own_files = [] if key == "reloadd" else dist.files or []  # reloadd's own package is copied whole
    for file in own_files:
        if ".." not in file.parts:
            files[str(file)] = str(dist.locate_file(file))
print(json.dumps({"reloadd": str(Path(reloadd.__file__).parent), "files": files}))
"""


class CopyFailed(Exception):
    """The copy could not be made or run as the unprivileged user; the tests skip, saying why."""


def build_copy(into: Path) -> list[str]:
    """Copy what reloadd needs into ``into`` (an empty directory); return the argv that runs it."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    lib = into / "lib"
    stdlib = lib / version
    site = stdlib / "site-packages"
    shutil.copytree(
        sysconfig.get_path("stdlib"), stdlib, ignore=shutil.ignore_patterns(*STDLIB_SKIPPED), symlinks=False
    )
    found = _required_files()
    shutil.copytree(found["reloadd"], site / "reloadd", ignore=shutil.ignore_patterns("__pycache__"))
    for relative, source in found["files"].items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, site / relative)
    # Compiled modules come along (copy2 keeps the mtimes they are checked against); the rest are
    # compiled now: nobody may not write them, and compiling pydantic at every start takes seconds.
    subprocess.run([sys.executable, "-I", "-m", "compileall", "-q", str(site)], timeout=COPY_TIMEOUT, check=True)
    _copy_libpython(lib)
    (into / "bin").mkdir()
    python = into / "bin" / version
    shutil.copy2(Path(sys.executable).resolve(), python)
    launcher = into / "bin" / "reloadd"
    # -I: nothing from the caller's environment or home directory. The copy's site-packages is put
    # on the path by hand: where site.py looks differs between builds (Debian's says dist-packages).
    library_path = f'LD_LIBRARY_PATH="{lib}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"'
    start = f"import sys; sys.path.insert(0, {str(site)!r}); from reloadd.__main__ import main; main()"
    launcher.write_text(f'#!/bin/sh\n{library_path} exec "{python}" -I -c "{start}" "$@"\n')
    launcher.chmod(0o755)
    _open_to_all(into)
    return [str(launcher)]


def _required_files() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-I", "-c", PROBE], capture_output=True, text=True, timeout=COPY_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise CopyFailed(f"listing reloadd's installed files failed: {done.stderr.strip()[-300:]}")
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def _copy_libpython(lib: Path) -> None:
    """A shared-library build (pyenv's) finds libpython by an absolute path the other user may not reach."""
    name = sysconfig.get_config_var("INSTSONAME")
    libdir = sysconfig.get_config_var("LIBDIR")
    if name and libdir and (Path(libdir) / name).is_file():
        shutil.copy2(Path(libdir) / name, lib / name)


def _open_to_all(root: Path) -> None:
    """Every directory searchable and every file readable by any user; nothing writable but by root."""
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o755)
        for name in files:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                os.chmod(path, 0o755 if mode & stat.S_IXUSR else 0o644)


def unprivileged_reloadd() -> tuple[list[str], Path]:
    """Build the copy in a new temporary directory and check that nobody can run it.

    Returns:
        The argv that runs reloadd as nobody (setpriv first), and the directory to remove afterwards.
        Raises CopyFailed, saying why, when the copy cannot be made or run.
    """
    into = Path(tempfile.mkdtemp(prefix="reloadd-for-nobody-"))
    try:
        into.chmod(0o755)
        argv = [*NOBODY, *build_copy(into)]
        _check_reachable(into)
        done = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=COPY_TIMEOUT, check=False)
        if done.returncode != 0:
            raise CopyFailed(f"the copy of reloadd in {into} does not run as nobody: {done.stderr.strip()[-300:]}")
    except (OSError, subprocess.SubprocessError, CopyFailed) as exc:
        shutil.rmtree(into, ignore_errors=True)
        raise CopyFailed(str(exc)) from None
    return argv, into


def _check_reachable(into: Path) -> None:
    """The temporary directory's parents must be searchable by others (TMPDIR may be a private folder)."""
    for parent in into.parents:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            raise CopyFailed(f"{parent} (a parent of the temporary directory) is not searchable by other users")
