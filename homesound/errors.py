"""Errors a user can act on: the CLI prints their message alone, never a traceback."""


class HomesoundError(Exception):
    """A problem caused by input or environment, with a message that says what to do."""


class AudioDecodeError(HomesoundError):
    """An audio file could not be read; the message names the file and the fix."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelSourceError(HomesoundError):
    """A VGGish source (Hub handle, SavedModel, checkpoint, PCA file) is missing or malformed."""


class ProvenanceMismatchError(HomesoundError):
    """Embeddings made by different embedders were about to be mixed."""
