"""Finding the recordings of an archive: files and folders walked recursively, safely.

Folders are walked in name order; hidden entries (names starting with '.') are skipped; files are
kept by extension (case-insensitive). Files named on the command line are always kept, whatever
their extension: the user asked for them. Symbolic links are followed, but a folder already
walked (same device and inode) is not walked again, so link loops end; linked folders are walked
after all real ones, so a folder reached both ways keeps its real name. What cannot be a
recording (a dangling link, a FIFO named like audio, a folder that cannot be listed) is reported
as a problem instead of stopping the walk.
"""

from __future__ import annotations

import collections
import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Iterable

from homesound.errors import HomesoundError

DEFAULT_EXTENSIONS = (
    "wav", "wave", "flac", "ogg", "oga", "opus", "mp3", "m4a", "aac", "3gp", "caf", "aiff", "aif", "amr", "wma",
)


@dataclass(frozen=True)
class FoundFile:
    path: str  # absolute, symbolic links kept as found (the name the user knows)
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str
    is_file: bool  # a would-be recording (stored as failed) rather than a folder (reported only)


@dataclass
class Discovery:
    files: list[FoundFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped_by_extension: int = 0


def parse_extensions(option: str | None) -> tuple[str, ...]:
    """'wav,flac' replaces the defaults; '+mp4,mkv' adds to them (e.g. camera videos)."""
    if option is None:
        return DEFAULT_EXTENSIONS
    extra = option.startswith("+")
    names = tuple(name.strip().lower().lstrip(".") for name in option.lstrip("+").split(",")
                  if name.strip().lstrip("."))
    if not names:
        raise HomesoundError(f"--extensions {option!r} names no extension; give a list such as 'wav,flac' "
                             "(replaces the default list) or '+mp4,mkv' (adds to it)")
    return tuple(dict.fromkeys(DEFAULT_EXTENSIONS + names if extra else names))


def discover(inputs: Iterable[str | os.PathLike], extensions: Iterable[str] = DEFAULT_EXTENSIONS) -> Discovery:
    wanted = {"." + extension.lower().lstrip(".") for extension in extensions}
    found = Discovery()
    seen_paths: set[str] = set()
    walked_folders: set[tuple[int, int]] = set()

    def add_file(path: str, explicit: bool) -> None:
        if path in seen_paths:
            return
        if not explicit and os.path.splitext(path)[1].lower() not in wanted:
            found.skipped_by_extension += 1
            return
        seen_paths.add(path)
        try:
            info = os.stat(path)
        except OSError as error:
            found.problems.append(Problem(path, stat_failure(path, error), is_file=True))
            return
        if stat.S_ISDIR(info.st_mode):
            walk(path, info)
        elif not stat.S_ISREG(info.st_mode):
            found.problems.append(Problem(path, f"not a regular file ({file_kind(info.st_mode)})", is_file=True))
        else:
            found.files.append(FoundFile(path, info.st_size, info.st_mtime_ns))

    def walk(folder: str, info: os.stat_result) -> None:
        key = (info.st_dev, info.st_ino)
        if key in walked_folders:
            return  # a link back into a folder already walked (a loop, or two routes to one folder)
        walked_folders.add(key)
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            found.problems.append(Problem(folder, f"cannot list this folder ({error.strerror})", is_file=False))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = os.path.join(folder, entry.name)
            try:
                linked_folder = entry.is_symlink() and entry.is_dir()
            except OSError:  # a link loop: add_file reports it if it is named like audio
                linked_folder = False
            if linked_folder:
                linked_folders.append(path)  # after the real folders, so those keep their own names
            elif entry.is_dir(follow_symlinks=False):
                walk(path, entry.stat(follow_symlinks=False))
            else:
                add_file(path, explicit=False)

    linked_folders: collections.deque[str] = collections.deque()
    for name in inputs:
        path = os.path.abspath(os.fspath(name))
        try:
            info = os.stat(path)
        except OSError as error:
            found.problems.append(Problem(path, stat_failure(path, error), is_file=True))
            continue
        if stat.S_ISDIR(info.st_mode):
            walk(path, info)
        else:
            add_file(path, explicit=True)
    while linked_folders:
        path = linked_folders.popleft()
        try:
            walk(path, os.stat(path))
        except OSError as error:
            found.problems.append(Problem(path, stat_failure(path, error), is_file=False))
    return found


def stat_failure(path: str, error: OSError) -> str:
    """Why a path cannot be read, in words (shared with the single-file reader)."""
    if error.errno == errno.ELOOP:
        return "symbolic link loop (the link points back to itself)"
    if error.errno == errno.ENOENT:
        return "broken symbolic link (its target is missing)" if os.path.islink(path) else "no such file"
    if error.errno == errno.EACCES:
        return "permission denied; make the file and its folders readable"
    return f"cannot read ({error.strerror})"


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"
