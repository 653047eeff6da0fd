"""The laptop's tree, read only through descriptors: nothing outside LOCAL_DIR is opened, listed or sent.

LOCAL_DIR is opened once. Every later listing, stat and open starts from that descriptor and
walks one component at a time with ``O_NOFOLLOW | O_DIRECTORY``: a directory swapped for a
symlink (to ``~/.ssh``, say) between a change and its upload makes the walk fail with ELOOP or
ENOTDIR instead of following it. A symlink goes across only when its target, resolved through
the real tree (in-tree links followed one component at a time, ``..`` taken physically), stays
inside LOCAL_DIR. Files are opened non-blocking and must be regular files before a byte is
read, so a FIFO swapped in never blocks the sync.

What cannot be synced -- a name that is not UTF-8, an unreadable file or directory, a FIFO,
socket or device, a link leaving the tree, a component swapped for a link -- raises NotSynced
(or, during a walk, is handed to ``skip``) and is left as it is in the pod: neither sent nor
deleted (localview.py).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from typing import Callable, Optional

from ..shared.manifest import (
    DIR,
    FILE,
    LINK,
    Entry,
    Exclude,
    Listings,
    collector_paused,
    entry_for,
    escaped,
    is_utf8,
    list_dir,
    make_entry,
)
from ..shared.paths import TEMP_PREFIX, PathRefused, check_link_target

OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO opened this way never blocks
LINK_DEPTH_MAX = 40  # symlinks followed while resolving one target (Linux's own limit)
HASH_CHUNK = 1024 * 1024
SPECIAL = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}
_NEEDS = {stat.S_IFREG: os.R_OK, stat.S_IFDIR: os.R_OK | os.X_OK}  # what reading a file or listing a directory takes


class NotSynced(Exception):
    """A path the laptop will not send: ``message`` is the whole warning line."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


Skip = Callable[[NotSynced], None]
Listed = Callable[[str, set[str]], None]  # (directory relative to the root, the names in it)
ExcludeIn = Callable[[str], Exclude]  # the exclude test for one directory's entries


def reason(path: str, what: str) -> NotSynced:
    return NotSynced(path, f"not synced: {escaped(path)}: {what}")


class LocalTree:
    """LOCAL_DIR held open; paths are relative to it ("" is the root itself)."""

    def __init__(self, root: str) -> None:
        self.path = root
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        self.identity = (st.st_dev, st.st_ino)

    @classmethod
    def over(cls, fd: int) -> LocalTree:
        """A view of a directory already open as ``fd`` (the caller keeps and closes it)."""
        tree = cls.__new__(cls)
        tree.path, tree.fd, tree.identity = "", fd, (0, 0)
        return tree

    def close(self) -> None:
        os.close(self.fd)

    # -- walking -------------------------------------------------------------------------------------
    def open_dir(self, relative: str) -> int:
        """A new descriptor of the directory ``relative``.

        Raises FileNotFoundError or NotADirectoryError when it is gone (or is a file now),
        NotSynced when a component is a symlink or cannot be read.
        """
        fd = os.dup(self.fd)
        done = ""
        for part in relative.split("/") if relative else []:
            done = f"{done}/{part}" if done else part
            try:
                child = os.open(part, OPEN_DIR, dir_fd=fd)
            except OSError as exc:
                problem = _blocked(fd, part, done, relative, exc)
                os.close(fd)
                raise problem from None
            os.close(fd)
            fd = child
        return fd

    def entry(self, relative: str) -> Optional[Entry]:
        """The entry at ``relative`` (None when it is gone); NotSynced when it cannot be sent."""
        directory, _, name = relative.rpartition("/")
        if not is_utf8(relative):
            raise NotSynced(relative, f"skipping {escaped(relative)}: its name is not UTF-8")
        try:
            parent = self.open_dir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return _entry(parent, name, relative)
        finally:
            os.close(parent)

    def names(self, relative: str) -> set[str]:
        """The names in the directory ``relative``; raises as open_dir does."""
        fd = self.open_dir(relative)
        try:
            with os.scandir(fd) as entries:
                return {entry.name for entry in entries}
        except PermissionError as exc:
            raise reason(relative, f"cannot be read ({exc.strerror}); nothing below it is synced") from None
        finally:
            os.close(fd)

    def scan(self, relative: str, exclude_in: ExcludeIn, skip: Skip, listed: Optional[Listed] = None) -> Listings:
        """Every entry below the directory ``relative`` (paths relative to the root), never following a
        link, by the directory it is in: every directory walked has a list (``relative`` too, unless
        it cannot be opened), as the agent's walk gives them (manifest.listings).

        ``listed`` is told each directory's names as soon as it is listed; then ``exclude_in`` gives
        the exclude test for that directory's entries (asked once per directory: a test that knows
        no rule applies there can be a cheaper one).
        """
        found: Listings = {}
        try:
            stack = [(self.open_dir(relative), f"{relative}/" if relative else "")]
        except NotSynced as exc:
            skip(exc)
            return found
        except OSError:
            return found
        with collector_paused():
            while stack:
                fd, base = stack.pop()
                try:
                    stack += _scan_listing(fd, base, exclude_in, skip, listed, found)
                finally:
                    os.close(fd)
        return found

    # -- reading -------------------------------------------------------------------------------------
    def open_file(self, relative: str) -> tuple[int, os.stat_result]:
        """A regular file opened for reading (blocking reads), and its stat; NotSynced or OSError otherwise."""
        directory, _, name = relative.rpartition("/")
        parent = self.open_dir(directory)
        try:
            fd = os.open(name, OPEN_FILE, dir_fd=parent)
        except OSError as exc:
            raise _blocked(parent, name, relative, relative, exc) from None
        finally:
            os.close(parent)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise reason(relative, f"{SPECIAL.get(stat.S_IFMT(st.st_mode), 'not a regular file')} now")
        os.set_blocking(fd, True)
        return fd, st

    def read_small(self, relative: str, limit: int) -> Optional[bytes]:
        """Up to ``limit`` bytes of a regular file (a .gitignore), or None when it is not one."""
        try:
            fd, _ = self.open_file(relative)
        except (OSError, NotSynced):
            return None
        try:
            return os.read(fd, limit)
        except OSError:
            return None
        finally:
            os.close(fd)

    def hash(self, relative: str) -> str:
        """sha256 of a regular file, or "" when it cannot be read."""
        try:
            fd, _ = self.open_file(relative)
        except (OSError, NotSynced):
            return ""
        digest = hashlib.sha256()
        try:
            while chunk := os.read(fd, HASH_CHUNK):
                digest.update(chunk)
        except OSError:
            return ""
        finally:
            os.close(fd)
        return digest.hexdigest()

    # -- symlinks ------------------------------------------------------------------------------------
    def check_link(self, relative: str, target: str) -> None:
        """Raises NotSynced unless the link at ``relative`` resolves inside the tree (by the real tree)."""
        try:
            check_link_target(relative, target)
        except PathRefused as exc:
            raise NotSynced(relative, f"skipping {exc.message}") from None
        directory = relative.split("/")[:-1]
        if self._resolve(directory, target, 0) is None:
            raise NotSynced(
                relative,
                f"skipping symlink {relative!r} -> {target!r}: resolves outside the synced directory "
                "(or loops) through the links inside it",
            )

    def _resolve(self, position: list[str], target: str, depth: int) -> Optional[list[str]]:
        """The components (from the root) ``target`` names when followed from ``position``; None outside."""
        if target.startswith("/") or depth > LINK_DEPTH_MAX:
            return None
        position = list(position)
        parts = [part for part in target.split("/") if part not in ("", ".")]
        for index, part in enumerate(parts):
            if part == "..":
                if not position:
                    return None
                position.pop()
                continue
            position.append(part)
            kind, link = self._lookup(position)
            if kind == LINK:
                resolved = self._resolve(position[:-1], link, depth + 1)
                if resolved is None:
                    return None
                position = resolved
            elif kind != DIR:
                return _textual(position, parts[index + 1 :])  # missing (or a file): nothing to follow
        return position

    def _lookup(self, position: list[str]) -> tuple[Optional[str], str]:
        """(kind, link target) of the entry at ``position``; (None, "") when it is not there."""
        try:
            parent = self.open_dir("/".join(position[:-1]))
        except (OSError, NotSynced):
            return None, ""
        try:
            mode = os.stat(position[-1], dir_fd=parent, follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                return LINK, os.readlink(position[-1], dir_fd=parent)
            return (DIR if stat.S_ISDIR(mode) else FILE), ""
        except OSError:
            return None, ""
        finally:
            os.close(parent)


def _textual(position: list[str], rest: list[str]) -> Optional[list[str]]:
    for part in rest:
        if part != "..":
            position.append(part)
        elif not position:
            return None
        else:
            position.pop()
    return position


def _blocked(fd: int, name: str, done: str, relative: str, exc: OSError) -> Exception:
    """What a failed open of ``name`` (the component ending ``done``) on the way to ``relative`` means."""
    if exc.errno == errno.ENOENT:
        return FileNotFoundError(exc.errno, exc.strerror, relative)
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        except OSError:
            return FileNotFoundError(errno.ENOENT, "gone", relative)
        if stat.S_ISLNK(mode):
            return reason(relative, f"{escaped(done)} is a symlink now; not following it")
        return NotADirectoryError(exc.errno, exc.strerror, relative)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return reason(done, f"cannot be read ({exc.strerror})")
    return exc


def _entry(parent: int, name: str, relative: str, st: Optional[os.stat_result] = None) -> Optional[Entry]:
    if st is None:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
    _check_readable(parent, name, relative, st)
    target = os.readlink(name, dir_fd=parent) if stat.S_ISLNK(st.st_mode) else ""
    return entry_for(relative, st, target)


def _check_readable(parent: int, name: str, relative: str, st: os.stat_result) -> None:
    """NotSynced for a special file, or a file or directory this user cannot read (nothing is opened)."""
    kind = SPECIAL.get(stat.S_IFMT(st.st_mode))
    if kind is not None:
        raise reason(relative, f"{kind}, not a regular file")
    need = _NEEDS.get(stat.S_IFMT(st.st_mode))
    if need is None or _mode_allows(st, need):
        return
    if not os.access(name, need, dir_fd=parent, follow_symlinks=False):  # the mode says no: ACLs may say yes
        what = "directory" if need != os.R_OK else "file"
        raise reason(relative, f"this {what} cannot be read (Permission denied)")


def _mode_allows(st: os.stat_result, need: int) -> bool:
    """The permission bits alone grant ``need`` to this process (the common case, without a system call)."""
    if _EUID == 0:
        return True
    if st.st_uid == _EUID:
        shift = 6
    elif st.st_gid in _GROUPS:
        shift = 3
    else:
        shift = 0
    return (st.st_mode >> shift) & need == need


_EUID = os.geteuid()
_GROUPS = frozenset([os.getegid(), *os.getgroups()])


def _listing(fd: int, base: str, skip: Skip) -> list[tuple[str, Optional[os.stat_result]]]:
    """(name, lstat) of each entry; the stat is None when the entry vanished meanwhile."""
    return list_dir(fd, lambda exc: skip(reason(base.rstrip("/"), f"cannot be listed ({exc.strerror})")))


def _scan_listing(
    fd: int, base: str, exclude_in: ExcludeIn, skip: Skip, listed: Optional[Listed], found: Listings
) -> list[tuple[int, str]]:
    """Add what the open directory ``base`` holds to ``found``; the descriptors of its subdirectories to walk."""
    items = _listing(fd, base, skip)
    directory = base[:-1]
    if listed is not None:
        listed(directory, {name for name, _ in items})
    exclude = exclude_in(directory)
    here: list[Entry] = []
    found[directory] = here
    children = []
    for name, st in items:
        # The common entry inline, without a call it can save: an ASCII name (UTF-8 as it is) of a
        # regular file that the mode lets this user read. A walk passes here for every file of the
        # tree, at every start.
        if (
            st is not None
            and stat.S_ISREG(mode := st.st_mode)
            and name.isascii()
            and (_EUID == 0 or _mode_allows(st, os.R_OK))
        ):
            path = f"{base}{name}"
            if not (name.startswith(TEMP_PREFIX) or exclude(path, False)):
                here.append(make_entry(Entry, (path, FILE, st.st_size, st.st_mtime_ns, bool(mode & stat.S_IXUSR), "")))
            continue
        child = _scan_one(fd, name, st, base, exclude, skip, here)
        if child is not None:
            children.append((child, f"{base}{name}/"))
    return children


def _scan_one(
    fd: int, name: str, st: Optional[os.stat_result], base: str, exclude: Exclude, skip: Skip, here: list[Entry]
) -> Optional[int]:
    """Add ``name`` of the directory ``fd`` to ``here``; a descriptor to walk into when it is a directory."""
    path = f"{base}{name}"
    if name.startswith(TEMP_PREFIX) or st is None:  # None: vanished between listing and stat
        return None
    if not name.isascii() and not is_utf8(name):  # an ASCII name is UTF-8: no encode for most names
        skip(NotSynced(path, f"skipping {escaped(path)}: its name is not UTF-8"))
        return None
    mode = st.st_mode
    is_dir = stat.S_ISDIR(mode)
    if exclude(path, is_dir):
        return None
    if stat.S_ISREG(mode) and _mode_allows(st, os.R_OK):
        # A file the mode lets us read, with a name that is not ASCII: nothing to ask the system.
        here.append(Entry(path, FILE, st.st_size, st.st_mtime_ns, bool(mode & stat.S_IXUSR)))
        return None
    try:
        entry = _entry(fd, name, path, st)
        child = os.open(name, OPEN_DIR, dir_fd=fd) if is_dir else None
    except NotSynced as exc:
        skip(exc)
        return None
    except OSError as exc:
        problem = _blocked(fd, name, path, path, exc)
        if isinstance(problem, NotSynced):
            skip(problem)
        return None  # gone (or a file now) between the listing and the open: its event catches up
    if entry is not None:
        here.append(entry)
    return child
