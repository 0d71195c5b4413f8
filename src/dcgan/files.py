"""Files a run writes: each one atomically, so a kill at any moment leaves the old file or the new.

`atomic_write(path, write)` has `write` fill a temporary file beside `path` (`.<name>.tmp<pid>`),
fsyncs it, renames it over `path` and fsyncs the folder, so the rename itself survives a power cut.
A full disk or another OS error is one line that says the previous file is intact. A process
killed mid-write leaves its temporary file behind: `remove_stale_temp_files` clears those from a
run folder when a run resumes (one process writes a run folder, so any leftover is stale).

`RunFolderLock` makes that true: the process that trains in a run folder holds an exclusive
`flock` on its `.lock` file for the run's life; the OS releases it when the process ends, however
it ends, so a killed run can be resumed at once, and a second writer is refused with one line
naming the process that holds it. (On Windows, which has no flock, the folder is not locked.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

from dcgan.errors import UserError

TEMP_NAME = re.compile(r"^\..+\.tmp\d+$")
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once, at import: os.umask can only be read by setting it
FILE_MODE = 0o666 & ~_UMASK


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call write(tmp_path), then rename over `path`: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)  # safetensors writes 0600; a run folder's files are as readable as any other
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except Exception as error:  # a full disk, a read-only folder: the old file is untouched
        if not is_write_error(error):
            raise
        raise UserError(f"could not write {path} ({write_error_text(error)}); "
                        f"the previous {path.name}, if any, is intact") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def is_write_error(error: BaseException) -> bool:
    """An OS error, or a writer's own wrapping of one: torch.save raises RuntimeError ("iostream
    error", "unexpected pos" in its zip writer), safetensors its SafetensorError (naming the OS
    error), Pillow and numpy OSError."""
    if os_error(error) is not None:
        return True
    text = str(error)
    if isinstance(error, RuntimeError) and re.search(r"write|iostream|inline_container|StreamWriter", text, re.I):
        return True
    return type(error).__name__ == "SafetensorError" and re.search(r"I/O error|IoError|os error", text) is not None


def os_error(error: BaseException) -> OSError | None:
    """The OSError an exception is, or was raised while handling (torch.save hides it that way)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def write_error_text(error: BaseException) -> str:
    """The OS's words for a write error: "No space left on device", "File too large"."""
    if (cause := os_error(error)) is not None:
        return cause.strerror or str(cause)
    match = re.search(r'I/O error: (.+?) \(os error \d+\)|message: "([^"]+)"', str(error))  # safetensors' words
    if match:
        return match.group(1) or match.group(2)
    text = str(error).strip()
    return text.splitlines()[-1][:200] if text else type(error).__name__


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder for fsync; its rename is durable enough
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | Path, value) -> None:
    text = json.dumps(value, indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def save_image(image, path: str | Path, **options) -> None:
    """A PIL image, atomically; the format follows the file name (the temporary name has none)."""
    path = Path(path)
    format = {".png": "PNG", ".gif": "GIF", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(path.suffix.lower(),
                                                                                               "PNG")
    atomic_write(path, lambda tmp: image.save(tmp, format=format, **options))


class RunFolderLock:
    """An exclusive lock on `folder/.lock`, taken on creation; `release()` or `with` gives it back."""

    NAME = ".lock"

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / self.NAME
        self.handle = None
        try:
            import fcntl
        except ImportError:  # Windows
            return
        try:
            handle = open(self.path, "a+")
        except OSError as error:  # a read-only or foreign folder
            raise UserError(f"cannot write the run folder {self.path.parent} "
                            f"({error.strerror or type(error).__name__})") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(f"{self.path.parent} is being trained by {holder}; wait for it to end or stop it "
                            f"(a run folder has one writer)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the descriptor releases the flock
            self.handle = None

    def __enter__(self) -> RunFolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete `.<name>.tmp<pid>` files left by killed processes in `folder` and its sub-folders."""
    removed = []
    for path in Path(folder).rglob(".*.tmp*"):
        if path.is_file() and TEMP_NAME.match(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
