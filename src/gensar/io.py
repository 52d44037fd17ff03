"""Atomic file and directory writes (output is either complete or absent), and the one line reader."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gensar import locks
from gensar.errors import InputError, OutputError
from gensar.ownership import MARKER, is_ours, write_marker


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OutputError(f"{path}: cannot write: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError):  # a full disk, a read-only file system: the user's to fix, one line
            raise OutputError(f"{path}: cannot write: {err.strerror or err}") from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_output_json(path: str | Path, key: str, value: str) -> Path:
    """``path`` may be (re)written as a JSON result: it does not exist, or it is a JSON object whose
    ``key`` is ``value`` (this writer's own earlier result). Anything else (a user's file, another
    tool's, a directory) is refused with ``OutputError``, so a mistyped option never replaces it."""
    path = Path(path)
    if not path.exists():
        return path
    try:
        ours = path.is_file() and json.loads(path.read_text(encoding="utf-8")).get(key) == value
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise OutputError(f"{path}: exists and is not a result this command wrote (no \"{key}\": \"{value}\"); "
                          "choose another path")
    return path


def lock_file_of(out: Path) -> Path:
    """The lock of output directory ``out``: a sibling, since ``atomic_dir`` replaces ``out`` itself."""
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.lock"


def check_output_dir(out: str | Path, overwrite: bool, lock: bool = True) -> Path:
    """Claim output directory ``out`` for this process: lock it, then refuse to replace what is not ours.

    An existing non-empty directory is refused unless it is ours (``ownership.is_ours``) *and*
    ``overwrite`` is given. The lock (see ``gensar.locks``) is held until ``atomic_dir`` finishes or
    the process ends, so a second writer of ``out`` fails at once naming this process's pid.
    Temporaries of killed earlier writes of ``out`` are removed once the lock is held (a live
    writer would hold the lock, so what matches our exact naming then is stale). ``lock=False``:
    check only (the non-zero ranks of a distributed training, whose rank 0 holds the lock).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: output path exists and is not a directory")
    parent = Path(os.path.abspath(out)).parent
    if not lock:
        _refuse_what_is_not_ours(out, overwrite)
        return out
    created = [p for p in (parent, *parent.parents) if not p.exists()]  # deepest first
    if created:
        try:
            parent.mkdir(parents=True)
        except OSError as err:
            raise OutputError(f"{parent}: cannot create the output's parent directory: "
                              f"{err.strerror or err}") from None
    try:
        held = locks.hold(lock_file_of(out), out)
    except OSError as err:
        _remove_empty(created)
        raise OutputError(f"{out}: cannot lock the output directory: {err.strerror or err}") from None
    if created:  # a failed command leaves no empty parents behind; a finished one needs them
        held.on_release.append(lambda: None if Path(out).exists() else _remove_empty(created))
    try:
        _refuse_what_is_not_ours(out, overwrite)
        remove_stale_temporaries(out)
    except BaseException:
        locks.release(lock_file_of(out))
        raise
    return out


def _remove_empty(dirs: list[Path]) -> None:
    """``rmdir`` each of ``dirs`` (deepest first) while empty: only what this process created."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            return


def _refuse_what_is_not_ours(out: Path, overwrite: bool) -> None:
    if out.is_dir() and any(out.iterdir()):
        if not is_ours(out):
            raise OutputError(
                f"{out}: output directory exists, is not empty and was not written by gensar "
                f"(no {MARKER}); refusing to replace it, even with --overwrite"
            )
        if not overwrite:
            raise OutputError(f"{out}: output directory exists and is not empty (use --overwrite)")


def remove_stale_temporaries(out: Path, files: bool = False) -> None:
    """Remove ``.OUT.XXXXXXXX.tmp`` directories (``atomic_dir``'s exact naming) next to ``out``;
    with ``files``, the same-named regular files of ``atomic_write_bytes`` instead.

    Call only while holding the lock of ``out`` (or of the run directory holding it): every
    writer holds it, so such a temporary then belongs to a writer that was killed.
    """
    absolute = Path(os.path.abspath(out))
    # mkdtemp/mkstemp: the prefix, 8 characters of [a-z0-9_], the suffix
    pattern = re.compile(re.escape(f".{absolute.name}.") + r"[a-z0-9_]{8}" + re.escape(".tmp"))
    if not absolute.parent.is_dir():
        return
    for entry in absolute.parent.iterdir():
        if not pattern.fullmatch(entry.name) or entry.is_symlink():
            continue
        if files and entry.is_file():
            entry.unlink(missing_ok=True)
        elif not files and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False, kind: str = "output") -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``out``.

    On any exception the temporary directory is removed and ``out`` is untouched. The new
    directory carries our ownership marker (``kind`` names the command), so a later
    ``--overwrite`` may replace it; the output's lock is released at the end.
    """
    out = check_output_dir(out, overwrite)
    try:
        absolute = Path(os.path.abspath(out))
        try:
            tmp = Path(tempfile.mkdtemp(dir=absolute.parent, prefix=f".{absolute.name}.", suffix=".tmp"))
        except OSError as err:
            raise OutputError(f"{out}: cannot write: {err.strerror or err}") from None
        try:
            write_marker(tmp, kind)
            yield tmp
            if absolute.exists():
                # A fresh name for the previous output, never a fixed one: a fixed ``.NAME.old``
                # could be the user's own. Named as a temporary, so if this process dies before the
                # rmtree the next writer removes it as stale.
                old = Path(tempfile.mkdtemp(dir=absolute.parent, prefix=f".{absolute.name}.", suffix=".tmp"))
                os.replace(absolute, old)  # over the empty directory mkdtemp made
                try:
                    os.replace(tmp, absolute)
                except BaseException:
                    os.replace(old, absolute)  # put the previous output back rather than lose it
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, absolute)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, OSError):
                raise OutputError(f"{out}: cannot write: {err.strerror or err}") from None
            raise
    finally:
        locks.release(lock_file_of(out))


def ensure_owned_dir(out: str | Path, kind: str) -> Path:
    """Create ``out`` (not atomically: for directories filled over time) and mark it ours if new."""
    out = Path(out)
    try:
        if not out.exists():
            out.mkdir(parents=True)
            write_marker(out, kind)
        elif not any(out.iterdir()):
            write_marker(out, kind)
    except OSError as err:
        raise OutputError(f"{out}: cannot create the output directory: {err.strerror or err}") from None
    return out


def json_object(text: str, path: str | Path, line: int) -> dict[str, Any]:
    """One JSON-lines record (canonical JSONL, events logs): a JSON object, else an ``InputError``
    naming the file and line."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"malformed JSON: {err.msg} (column {err.colno})", path=path, line=line) from None
    except RecursionError:
        raise InputError("malformed JSON: nested too deeply", path=path, line=line) from None
    if not isinstance(record, dict):
        raise InputError(f"expected a JSON object, got {type(record).__name__}", path=path, line=line)
    return record


def text_lines(data: bytes | Iterable[bytes], path: str | Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines of UTF-8 text as (1-based line number, text without a leading BOM or the
    line break). ``data``: the bytes, or their lines as a binary file (plain or gzip) yields them,
    so a large file streams. A line that is not UTF-8 is an ``InputError`` naming that line.

    The line reader of every text format gensar reads (loaders, canonical JSONL, events logs,
    request batches); lines end at ``\n`` only (JSON strings may hold U+2028 and the like)."""
    lines = data.split(b"\n") if isinstance(data, bytes) else data
    for lineno, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"not UTF-8 (undecodable bytes at byte {err.start} of the line)",
                             path=path, line=lineno) from None
        if lineno == 1 and text.startswith("\ufeff"):
            text = text[1:]
        text = text.rstrip("\r\n")
        if text.strip():
            yield lineno, text
