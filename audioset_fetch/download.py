"""The official AudioSet files and fetching them all (one failure does not stop the others)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from homesound.download import DownloadError, RemoteFile, download
from homesound.errors import HomesoundError

BASE_URL_ENV = "HOMESOUND_AUDIOSET_BASE_URL"
ONTOLOGY_URL_ENV = "HOMESOUND_AUDIOSET_ONTOLOGY_URL"
DEFAULT_BASE_URL = "https://storage.googleapis.com/us_audioset/youtube_corpus/v1"
DEFAULT_ONTOLOGY_URL = "https://raw.githubusercontent.com/audioset/ontology/master/ontology.json"
CSV_FILES = (
    "class_labels_indices.csv",
    "balanced_train_segments.csv",
    "eval_segments.csv",
    "unbalanced_train_segments.csv",
)
WHAT_CHOICES = ("csv", "ontology", "features")
def official_files(
    what: tuple[str, ...], base_url: str | None = None, ontology_url: str | None = None
) -> list[RemoteFile]:
    """The files for --what, at the official locations unless the base / ontology URL is overridden."""
    unknown = set(what) - set(WHAT_CHOICES)
    if unknown:
        raise HomesoundError(f"unknown --what {sorted(unknown)}; choose from {', '.join(WHAT_CHOICES)}")
    base = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    files = []
    if "csv" in what:
        files += [RemoteFile(name, f"{base}/csv/{name}") for name in CSV_FILES]
    if "ontology" in what:
        url = ontology_url or os.environ.get(ONTOLOGY_URL_ENV) or DEFAULT_ONTOLOGY_URL
        files.append(RemoteFile("ontology.json", url))
    if "features" in what:
        files.append(RemoteFile("features.tar.gz", f"{base}/features/features.tar.gz"))
    return files


def download_all(
    files: list[RemoteFile], dest_dir: str | os.PathLike, *, progress: bool = True, force: bool = False,
    report: Callable[[str], None] = print,
) -> list[Path]:
    """Fetch each file; a failure is reported and the others still come. Raises at the end if any failed."""
    done, failures = [], []
    for remote in files:
        try:
            path = download(remote, dest_dir, progress=progress, force=force)
            done.append(path)
            report(f"{remote.name}: {path} ({path.stat().st_size:,} bytes)")
        except DownloadError as error:
            failures.append(str(error))
            report(f"{remote.name}: FAILED: {error}")
    if failures:
        raise DownloadError(
            f"{len(failures)} of {len(files)} downloads failed (moved files: pass --base-url, --ontology-url "
            f"or {BASE_URL_ENV}):\n" + "\n".join(failures))
    return done


__all__ = ["DownloadError", "RemoteFile", "download", "download_all", "official_files"]
