"""Where a command writes, checked before it writes: nothing a user made is replaced or lost.

Every command that writes goes through here, so the rules are the same everywhere:

- A file output (`--out FILE`) is refused, unless `--force`, when it names one of the command's own
  inputs, an existing file of another kind than the command writes (a checkpoint, a user's notes:
  the kind is told from the file's content, `FileKind`), a symbolic link (writing would replace the
  link) or a folder. Files are then written atomically (`dcgan.files.atomic_write`).
- A folder output (`--outdir`, a web page's folder) is never replaced or emptied. `FolderOutput`
  writes single files into it and records each one's SHA-256 in the folder's `.dcgan-files.json`;
  a later command replaces a file only if that record says the toolkit wrote it and the file is
  unchanged since. Any other file in the way is named and refused (unless `--force`); files the
  command does not write are never touched.
- A read-modify-write of a shared file (a metrics file two evaluations append to) holds an
  exclusive lock (`locked`), so two writers that finish together both keep their record.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dcgan.errors import UserError
from dcgan.files import atomic_write, file_sha256, write_json

FORCE_HINT = "pass --force to replace it"


@dataclass(frozen=True)
class FileKind:
    """What a command writes: `name` for messages, `matches(path)` tells an existing file of this kind."""

    name: str
    matches: Callable[[Path], bool]


def _head(path: Path, size: int = 64) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def _is_image(path: Path) -> bool:
    head = _head(path)
    return (head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8"))
            or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"))


def _is_video(path: Path) -> bool:
    return _is_image(path) or _head(path)[4:8] == b"ftyp"  # GIF / WebP / MP4


def _is_onnx(path: Path) -> bool:
    # An ONNX ModelProto starts with its ir_version (field 1, varint: byte 0x08).
    return _head(path, 1) == b"\x08"


def _is_torch_export(path: Path) -> bool:
    """A .pt2 or TorchScript file `dcgan export` wrote: a zip carrying the extra file dcgan.json."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/dcgan.json") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _json_with(path: Path, test: Callable[[dict], bool], limit: int = 64 << 20) -> bool:
    try:
        if path.stat().st_size > limit:
            return False
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(value, dict) and test(value)


def _safetensors_format(path: Path, expected: str) -> bool:
    head = _head(path, 8)
    if len(head) < 8:
        return False
    size = int.from_bytes(head, "little")
    if not 2 <= size <= 1 << 20:
        return False
    try:
        with open(path, "rb") as handle:
            handle.seek(8)
            header = json.loads(handle.read(size))
    except (OSError, ValueError):
        return False
    return isinstance(header, dict) and (header.get("__metadata__") or {}).get("format") == expected


IMAGE = FileKind("an image (PNG, JPEG, WebP)", _is_image)
VIDEO = FileKind("a video (MP4, GIF, WebP)", _is_video)
ONNX = FileKind("an ONNX file", _is_onnx)
TORCH_EXPORT = FileKind("a file `dcgan export` wrote (.pt2 or TorchScript)", _is_torch_export)
METRICS = FileKind("a dcgan metrics file ({..., \"evaluations\": [...]})",
                   lambda path: _json_with(path, lambda value: isinstance(value.get("evaluations"), list)))


def extractor_kind(format_name: str) -> FileKind:
    return FileKind("a fast extractor file", lambda path: _safetensors_format(path, format_name))


def describe(path: Path) -> str:
    from dcgan.checkpoint import describe_file

    if path.is_symlink():
        return "a symbolic link"
    if path.is_dir():
        return "a folder"
    what = describe_file(path)
    if what == "a zip archive" and path.suffix in (".pt", ".pth"):
        return "a PyTorch file (a checkpoint?)"
    return what


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(os.path.abspath(a)) == Path(os.path.abspath(b))


def check_file_output(path: str | Path, kind: FileKind, *, inputs: Iterable[str | Path] = (),
                      force: bool = False, option: str = "--out", create_parent: bool = False) -> Path:
    """`path`, once it is safe to write a file of `kind` there; else one line, nothing written."""
    path = Path(path).expanduser()
    if path.is_symlink():
        if not force:
            raise UserError(f"{option} {path} is a symbolic link; writing would replace the link ({FORCE_HINT})")
        return path
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; name a file")
    for source in inputs:
        if source and Path(source).exists() and same_file(path, Path(source)):
            if not force:
                raise UserError(f"{option} {path} is this command's own input ({FORCE_HINT})")
    if path.exists() and not force and not kind.matches(path):
        raise UserError(f"{option} {path} exists and is {describe(path)}, not {kind.name}; "
                        f"it is left as it is ({FORCE_HINT})")
    if not create_parent and not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist")
    if path.parent.exists() and not path.parent.is_dir():
        raise UserError(f"{option} {path}: {path.parent} is not a folder")
    return path


def check_folder_output(folder: str | Path, *, inputs: Iterable[str | Path] = (), force: bool = False,
                        option: str = "--outdir") -> Path:
    """`folder`, unless it is a file, or one of the command's inputs or inside one (writing there
    would add files to what the command reads)."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {folder} is {describe(folder)}, not a folder")
    target = Path(os.path.realpath(folder))
    for source in inputs:
        if not source or not Path(source).exists():
            continue
        source = Path(os.path.realpath(source))
        if target == source or source in target.parents:
            if not force:
                raise UserError(f"{option} {folder} is inside this command's input {source}; "
                                f"name a folder outside it")
    return folder


MANIFEST = ".dcgan-files.json"


class FolderOutput:
    """A folder a command writes files into, replacing only files it wrote itself.

        output = FolderOutput(out, force=args.force).claim(["seed000000.png", ...])   # refuses first
        output.write("seed000000.png", lambda tmp: image.save(tmp, format="PNG"))
        output.finish()                                                              # the record

    `claim` refuses, naming them, the names that exist and are not the toolkit's unchanged files
    (with `force`, they are replaced); `legacy` names files an older version wrote without a record,
    taken as the toolkit's when `legacy_marker(folder)` says the folder is such an output.
    """

    def __init__(self, folder: str | Path, *, force: bool = False, option: str = "--outdir",
                 legacy: Callable[[Path], bool] | None = None):
        self.folder = Path(folder).expanduser()
        self.force = force
        self.option = option
        self.legacy = legacy
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"{option} {self.folder} is {describe(self.folder)}, not a folder")
        self.record = self._read_record()
        self.written: dict[str, str] = {}

    def _read_record(self) -> dict[str, str]:
        path = self.folder / MANIFEST
        try:
            if path.is_symlink() or path.stat().st_size > 64 << 20:
                return {}
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        files = value.get("files") if isinstance(value, dict) else None
        return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)} \
            if isinstance(files, dict) else {}

    def is_ours(self, name: str) -> bool:
        path = self.folder / name
        if path.is_symlink() or not path.is_file():
            return False
        if name in self.record:
            return file_sha256(path) == self.record[name]
        return self.legacy is not None and self.legacy(self.folder)

    def claim(self, names: Iterable[str]) -> FolderOutput:
        names = list(names)
        for name in names:
            if Path(name).is_absolute() or ".." in Path(name).parts or name == MANIFEST:
                raise UserError(f"{self.option}: {name!r} is not a file name inside {self.folder}")
        blocked = [name for name in names if (self.folder / name).exists() or (self.folder / name).is_symlink()]
        blocked = [name for name in blocked if not self.is_ours(name)]
        if blocked and not self.force:
            shown = ", ".join(blocked[:3]) + (f" and {len(blocked) - 3} more" if len(blocked) > 3 else "")
            raise UserError(f"{self.option} {self.folder} already holds {shown}, not written by dcgan (or changed "
                            f"since); nothing was written; name another folder or pass --force to replace them")
        for name in blocked:  # --force: a folder or link in the way is not replaced by a file
            if (self.folder / name).is_dir() and not (self.folder / name).is_symlink():
                raise UserError(f"{self.option}: {self.folder / name} is a folder; it is left as it is")
        return self

    def write(self, name: str, write: Callable[[Path], object]) -> Path:
        path = self.folder / name
        if path.is_symlink():
            path.unlink()  # claimed with --force: the link goes, never the file it points to
        atomic_write(path, write)
        self.written[name] = file_sha256(path)
        return path

    def finish(self) -> None:
        """Record what was written (with the earlier record's files that are still unchanged)."""
        kept = {name: digest for name, digest in self.record.items()
                if name not in self.written and (self.folder / name).is_file()}
        write_json(self.folder / MANIFEST, {"written_by": "dcgan", "files": {**kept, **self.written}})


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock for a read-modify-write of `path`: a flock on its folder, so that no lock
    file is left beside the user's files."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock
        yield
        return
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError as error:
        raise UserError(f"could not lock {folder} to update {Path(path).name} ({error.strerror or error})") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
