"""Resumable, verified HTTP downloads for every stage (AudioSet files, VGGish PCA parameters).

Bytes go to `<name>.part` and are renamed into place only once the size (Content-Length /
Content-Range) and, where known, a checksum match. A dropped connection keeps the `.part` file and
the next run asks for the rest with an HTTP Range request. A checksum comes from the caller, or
from the MD5 that Google Cloud Storage sends in its `x-goog-hash` header.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from homesound.errors import HomesoundError

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60.0


class DownloadError(HomesoundError):
    """One file could not be fetched; the message names the URL and what to do."""


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name under the destination folder
    url: str
    sha256: str | None = None


def download(remote: RemoteFile, dest_dir: str | os.PathLike, *, progress: bool = True, force: bool = False) -> Path:
    """Fetch one file into dest_dir, resuming a previous `.part`; returns the final path."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / remote.name
    if final.exists() and not force:
        return final
    part = dest_dir / (remote.name + ".part")
    validator_file = dest_dir / (remote.name + ".part.json")
    offset = part.stat().st_size if part.exists() else 0
    validator = _read_validator(validator_file) if offset else {}
    response = _open(remote.url, offset, validator, part)
    if response is None:
        _verify_checksums(part, remote, None)
        return _finish(part, final, validator_file)
    try:
        status = response.status
        if status == 206:
            total = _total_from_content_range(response.headers.get("Content-Range"), offset, remote.url)
        else:  # 200: the server sent the whole file (no resume support, or the file changed)
            offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        expected_md5 = _goog_md5(response.headers.get("x-goog-hash"))
        validator_file.write_text(json.dumps({
            "url": remote.url, "etag": response.headers.get("ETag"),
            "last_modified": response.headers.get("Last-Modified"), "total": total,
        }))
        _receive(response, part, offset, total, remote, progress)
    finally:
        response.close()
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"{remote.url}: got {size} of {total} bytes; run the same command again to resume "
            f"(the partial file {part} is kept)"
        )
    try:
        _verify_checksums(part, remote, expected_md5)
    except DownloadError:
        validator_file.unlink(missing_ok=True)
        raise
    return _finish(part, final, validator_file)


def _finish(part: Path, final: Path, validator_file: Path) -> Path:
    os.replace(part, final)  # atomic: `final` is either absent or complete
    validator_file.unlink(missing_ok=True)
    return final


def _open(url: str, offset: int, validator: dict, part: Path) -> http.client.HTTPResponse | None:
    """The response to a (ranged) GET; None when the server says the .part is already complete."""
    headers = {"User-Agent": "homesound"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator.get("url") == url and (validator.get("etag") or validator.get("last_modified")):
            headers["If-Range"] = validator.get("etag") or validator["last_modified"]
    request = urllib.request.Request(url, headers=headers)
    kept = f" (the partial file {part} is kept for the next try)" if offset else ""
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            match = re.fullmatch(r"bytes \*/(\d+)", (error.headers.get("Content-Range") or "").strip())
            if match and int(match.group(1)) == offset:
                return None  # the .part already holds the whole file
            part.unlink()  # our .part is longer than the file: it cannot be resumed
            raise DownloadError(f"{url}: the partial file {part} did not match the server's file and was removed; "
                                "run the command again to download it afresh") from None
        if error.code == 404:
            raise DownloadError(f"{url}: not found (HTTP 404); the file may have moved: "
                                "pass its current address") from None
        hint = "try again later" if error.code >= 500 else "check the URL"
        raise DownloadError(f"{url}: server answered HTTP {error.code} {error.reason}; {hint}{kept}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{url}: cannot connect ({reason}); check the internet connection or the URL, "
                            f"then run the command again{kept}") from None


def _receive(response, part: Path, offset: int, total: int | None, remote: RemoteFile, progress: bool) -> None:
    mode = "ab" if offset else "wb"
    with part.open(mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                      desc=remote.name, disable=not progress) as bar:
        try:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as error:
            out.flush()
            raise DownloadError(
                f"{remote.url}: the transfer broke off after {out.tell():,} bytes ({error!r}); "
                f"run the same command again to resume (the partial file {part} is kept)"
            ) from None
        out.flush()
        os.fsync(out.fileno())


def _total_from_content_range(value: str | None, offset: int, url: str) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", (value or "").strip())
    if not match or int(match.group(1)) != offset:
        raise DownloadError(f"{url}: the server's answer to a resume request is unusable (Content-Range {value!r}); "
                            "delete the .part file and try again")
    return None if match.group(3) == "*" else int(match.group(3))


def _goog_md5(value: str | None) -> str | None:
    """The MD5 (hex) in Google Cloud Storage's `x-goog-hash: crc32c=..., md5=...` header, if present."""
    for item in (value or "").split(","):
        key, _, encoded = item.strip().partition("=")
        if key == "md5" and encoded:
            return base64.b64decode(encoded).hex()
    return None


def _verify_checksums(part: Path, remote: RemoteFile, expected_md5: str | None) -> None:
    wanted = {name: value.lower() for name, value in (("sha256", remote.sha256), ("md5", expected_md5)) if value}
    if not wanted:
        return
    digests = {name: hashlib.new(name) for name in wanted}
    with part.open("rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            for digest in digests.values():
                digest.update(block)
    for name, value in wanted.items():
        actual = digests[name].hexdigest()
        if actual != value:
            part.unlink()
            raise DownloadError(
                f"{remote.url}: the download is corrupt ({name} {actual}, expected {value}); "
                "the bad file was removed, run the command again to download it afresh"
            )


def _read_validator(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
