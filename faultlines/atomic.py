"""Writes that are whole or nothing.

- `write_files` / `write_file`: each file is written to a temporary name beside it and
  renamed into place, so a file is either its old self or wholly new, never half-written.
- `lock`: one writer at a time per run folder, across processes (a `flock` on a file beside
  the folder); a second writer gets a one-line `RunDirError` at once instead of waiting.
- `remove_leftovers`: what a writer killed outright (SIGKILL, power loss) left beside a run
  folder is removed, or put back, by the next writer at that path, under the lock.
- `deferred_interrupt`: Ctrl-C waits for the few renames that commit a change, so an
  interrupt never lands between two of them.

Every temporary name is `.<NAME>.<kind>-<random>` beside `NAME`, with kind one of `LEFTOVERS`.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from faultlines.errors import RunDirError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are still written atomically, but not locked
    fcntl = None  # type: ignore[assignment]

#: The kinds of temporary name: a file or run being written (tmp), a run moved aside while
#: the new one is moved in (old), the probe's embeddings streamed beside the run (probe).
LEFTOVERS = ("tmp", "old", "probe")


def temporary_prefix(path: Path, kind: str) -> str:
    """The prefix of every temporary name of kind `kind` (one of LEFTOVERS) beside `path`."""
    return f".{path.name}.{kind}-"


def disk_error(path: Path, error: OSError) -> RunDirError:
    """A one-line RunDirError for an OSError met while writing `path`."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        reason += "; free some space or write elsewhere"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason += "; write to a folder you can write to"
    return RunDirError(f"cannot write {path} ({reason}); it was left as it was")


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def make_temporary(path: Path, kind: str, folder: bool = False) -> Path:
    """A new temporary file or folder beside `path` (named as `temporary_prefix` says), with
    the permissions of an ordinary one (mkstemp and mkdtemp make them private).

    Raises:
        RunDirError: it cannot be made there (no permission, no space).
    """
    prefix = temporary_prefix(path, kind)
    try:
        if folder:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
            tmp.chmod(0o777 & ~_umask())
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent)
            os.close(fd)
            tmp = Path(name)
            tmp.chmod(0o666 & ~_umask())
    except OSError as e:
        raise disk_error(path, e) from e
    return tmp


def write_files(contents: Mapping[str | Path, bytes | str]) -> list[Path]:
    """Write several files so that each is whole: all are written to temporary names first,
    then renamed into place one after another with Ctrl-C held off, so an interrupt or a
    full disk leaves every one of them as it was.

    Raises:
        RunDirError: a file cannot be written (no permission, no space); nothing was changed.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, content in contents.items():
            path = Path(path)
            data = content.encode("utf-8") if isinstance(content, str) else content
            tmp = make_temporary(path, "tmp")
            staged.append((tmp, path))
            try:
                tmp.write_bytes(data)
            except OSError as e:
                raise disk_error(path, e) from e
        with deferred_interrupt():
            for tmp, path in staged:
                os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return [path for _, path in staged]


def write_file(path: str | Path, content: bytes | str) -> Path:
    """Write one file atomically (see `write_files`)."""
    return write_files({path: content})[0]


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold off Ctrl-C (SIGINT) for the block, then deliver it: for the renames that commit a
    change, which take a few system calls. Outside the main thread, a plain block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, None)  # Python's own handler raises KeyboardInterrupt
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


#: Lock files this process holds, with how deeply (the CLI locks a run, then save_run again).
_held: dict[Path, int] = {}
_held_guard = threading.Lock()


@contextmanager
def lock(path: str | Path) -> Iterator[None]:
    """Hold the lock on the run folder `path` for the block, across processes and re-entrantly
    within one; on taking it, remove what killed writers left there (`remove_leftovers`).

    Raises:
        RunDirError: another process holds it (naming its pid), or its folder cannot be written.
    """
    target = Path(os.path.abspath(path))
    lock_file = target.parent / f".{target.name}.lock"
    with _held_guard:
        if lock_file in _held:
            _held[lock_file] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[lock_file] -= 1
        return
    fd = _take(target, lock_file)
    with _held_guard:
        _held[lock_file] = 1
    try:
        remove_leftovers(target)
        yield
    finally:
        with _held_guard:
            del _held[lock_file]
        if fd is not None:
            lock_file.unlink(missing_ok=True)  # while still held: the next taker makes a new one
            os.close(fd)


def _take(target: Path, lock_file: Path) -> int | None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return None
        while True:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise RunDirError(
                    f"another faultlines command (pid {holder}) is writing {target}; "
                    "wait for it to finish, or write to another folder"
                ) from None
            try:  # the file may have been unlinked by its last holder between open and flock
                if os.fstat(fd).st_ino == os.stat(lock_file).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        return fd
    except OSError as e:
        raise disk_error(target, e) from e


def remove_leftovers(target: Path) -> list[Path]:
    """Remove the temporary files and folders writers killed at `target` left beside it (and
    inside it), and put back a run that was moved aside but not yet replaced. Call it holding
    the lock. Returns what was removed."""
    removed = []
    for kind in LEFTOVERS:
        for found in sorted(target.parent.glob(glob.escape(temporary_prefix(target, kind)) + "*")):
            if kind == "old" and not target.exists() and (found / "run").is_dir():
                os.replace(found / "run", target)  # killed between the two renames: the earlier run stays
            _remove(found)
            removed.append(found)
    if target.is_dir():  # single files written into a run folder later (labels, repairs)
        for found in target.glob(".*.tmp-*"):
            _remove(found)
            removed.append(found)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
