"""The one way a file's content is named: its sha256, read in blocks (recordings can be hours long)."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of the file's bytes: the identity of a recording, a model or a weights file.

    Raises OSError when the file cannot be read; callers that go on without it say why.
    """
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()
