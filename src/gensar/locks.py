"""Exclusive, non-blocking locks on output directories, naming the holder's pid.

A lock is an ``fcntl.flock`` on a small lock file holding the holder's pid. The kernel drops a
flock when its process dies (even by SIGKILL), so a lock file left by a killed run is taken over
by the next one; a second live writer fails at once with a ``GensarError`` naming the holder.

The lock file is removed on release *while still locked*; a process that opened the old file
before the removal notices after acquiring that the path no longer names its file and retries,
so two processes never both believe they hold the lock.

The lock file sits beside the output, under a name a user may have taken (``.NAME.lock``): a file
there that does not look like a lock (its pid, or empty while a holder starts) is the user's, and
is refused rather than truncated and removed.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
from collections.abc import Callable
from pathlib import Path

from gensar.errors import LockedError, OutputError

LOCK_TEXT = re.compile(rb"\d*\n?")  # what ``acquire`` writes: the holder's pid
MAX_LOCK_BYTES = 32


class DirLock:
    """An exclusive lock held through ``lock_file``; ``what`` names the locked thing in errors."""

    def __init__(self, lock_file: Path, what: Path) -> None:
        self.lock_file = lock_file
        self.what = what
        self._fd: int | None = None
        self.on_release: list[Callable[[], None]] = []  # run after the lock is given up

    def acquire(self) -> DirLock:
        while True:
            try:
                fd, created = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                try:
                    fd, created = os.open(self.lock_file, os.O_RDWR), False
                except FileNotFoundError:
                    continue  # its holder released it between the two opens
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, MAX_LOCK_BYTES, 0).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise LockedError(
                    f"{self.what}: in use by another gensar process (pid {holder}, lock {self.lock_file})"
                ) from None
            try:
                same = os.stat(self.lock_file).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)  # the previous holder removed the file we opened: lock the new one
                continue
            if not created and not _looks_like_a_lock(fd):
                os.close(fd)
                raise OutputError(f"{self.lock_file}: exists and is not a gensar lock file; refusing to "
                                  f"overwrite it (move it away to write {self.what})")
            break
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_file)
        os.close(self._fd)
        self._fd = None
        for callback in self.on_release:
            callback()
        self.on_release.clear()

    @property
    def held(self) -> bool:
        return self._fd is not None


def _looks_like_a_lock(fd: int) -> bool:
    """True when the open file ``fd`` holds what a lock holds: a pid (a killed holder's), or nothing
    (a holder that had not written its pid yet)."""
    return os.fstat(fd).st_size <= MAX_LOCK_BYTES and LOCK_TEXT.fullmatch(os.pread(fd, MAX_LOCK_BYTES, 0)) is not None


_HELD: dict[Path, DirLock] = {}


def hold(lock_file: Path, what: Path) -> DirLock:
    """Take the lock for the rest of this process (re-entrant: a held lock is returned as is).

    Commands check their output early and write it much later (``train``, ``prepare``); holding
    the lock from the check to the process's end covers both without threading a handle through.
    """
    key = lock_file.absolute()
    lock = _HELD.get(key)
    if lock is None or not lock.held:
        lock = DirLock(lock_file, what).acquire()
        _HELD[key] = lock
    return lock


def release(lock_file: Path) -> None:
    lock = _HELD.pop(lock_file.absolute(), None)
    if lock is not None:
        lock.release()


@atexit.register
def release_all() -> None:
    for key in list(_HELD):
        release(key)
