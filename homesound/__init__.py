"""homesound: hear crying and laughter in home audio, and get better with each labeled clip."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("homesound")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
