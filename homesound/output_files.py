"""Writing an output file whole or not at all, with one clear message when it cannot be written.

Every file the stages write (an .npz, a Parquet export, model weights, a clip, a manifest) is
written as `<name>.part-<pid><extension>` first and renamed over the target only when it is
complete, so a crash, a full disk or a kill never leaves a half-written file under the real name;
the partial file is removed on any failure. The process id keeps two processes that write the same
file at once (workers filling one weights cache) out of each other's partial file; the extension
stays last for writers that pick their format by it (matplotlib, soundfile).
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from homesound.errors import HomesoundError

WHY = {
    errno.ENOSPC: "the disk is full; free some space and run it again",
    errno.EDQUOT: "the disk quota is used up; free some space and run it again",
    errno.EROFS: "the filesystem is read-only; write somewhere else",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "permission denied; choose a folder you can write to",
    errno.ENOENT: "the folder does not exist; create it first",
    errno.EISDIR: "it is a directory; give a file name",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def output_error(path: str | os.PathLike, error: OSError, what: str = "output") -> HomesoundError:
    """An OSError met while writing `path` -> one line naming the path and the fix."""
    code = error.errno
    if code is None and "No space left" in str(error):  # pyarrow keeps errno only in its text
        code = errno.ENOSPC
    why = WHY.get(code) or f"{error.strerror or error}"
    return HomesoundError(f"cannot write {what} {path}: {why}")


def prepare_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create the folder (and its parents) if needed; refuse what cannot hold files."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise HomesoundError(f"cannot write into {what} {folder}: it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        why = WHY.get(error.errno) if error.errno != errno.ENOENT else None
        why = why or f"{error.strerror}; choose a folder you can write to"
        raise HomesoundError(f"cannot create {what} {folder}: {why}") from None
    if not os.access(folder, os.W_OK):
        reason = "the filesystem is read-only" if _read_only_filesystem(folder) else "permission denied"
        raise HomesoundError(f"cannot write into {what} {folder}: {reason}; choose a folder you can write to")
    return folder


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """The target may be written: not a directory, in a folder that exists (made if missing) and is writable."""
    target = Path(path)
    if target.is_dir():
        raise HomesoundError(f"cannot write {what} {target}: it is a directory; give a file name inside it")
    prepare_folder(target.parent if str(target.parent) else Path("."), "folder of " + what)
    return target


def partial_path(target: str | os.PathLike) -> Path:
    """Where `target` is written until it is complete: `<name>.part-<pid><extension>` beside it."""
    target = Path(target)
    return target.with_name(f"{target.name}.part-{os.getpid()}{target.suffix}")


@contextmanager
def atomic_output(path: str | os.PathLike, *, what: str = "output") -> Iterator[Path]:
    """`with atomic_output(out) as partial: write(partial)`: out appears only when complete.

    Raises HomesoundError naming `what` and the fix when the file cannot be written.
    """
    target = check_output_file(path, what)
    partial = partial_path(target)
    try:
        yield partial
        os.replace(partial, target)
    except BaseException as error:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise output_error(target, error, what) from None
        raise


def write_table(table, path: str | os.PathLike, *, what: str = "table", csv_float_format: str | None = None,
                json_precision: int = 10) -> Path:
    """Write a pandas table as .csv, .json or anything else as .parquet (by the extension), whole or not at all."""
    target = Path(path)
    suffix = target.suffix.lower()
    with atomic_output(target, what=what) as partial:
        if suffix == ".csv":
            table.to_csv(partial, index=False, float_format=csv_float_format)
        elif suffix == ".json":
            table.to_json(partial, orient="records", indent=2, double_precision=json_precision)
        else:
            table.to_parquet(partial, index=False)
    return target


def _read_only_filesystem(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
