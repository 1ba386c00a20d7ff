"""TensorFlow's start-up chatter kept off the user's terminal (shown with -v).

Importing TensorFlow prints ~7 lines on stderr from its C++ libraries - among them an error-level
"failed call to cuInit" on every machine without a GPU - which users read as a failure. Some are
written while the shared libraries load, before any log level can be read, so setting
TF_CPP_MIN_LOG_LEVEL is not enough: the first import of `tensorflow`, wherever it happens, runs
with the process's stderr (file descriptor 2) sent to a temporary file, which is shown only if the
import fails. The level variables then silence what TensorFlow logs later (the cuInit error comes
at the first operation), and Python's `tensorflow` and `absl` loggers are set to errors only.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator

QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ logs: none below FATAL (the cuInit "error" included)
    "TF_CPP_MAX_VLOG_LEVEL": "-1",
    "GRPC_VERBOSITY": "ERROR",
    "GLOG_minloglevel": "3",
}
QUIET_MODULES = ("tensorflow",)


def silence_tensorflow() -> None:
    """Call before TensorFlow may be imported; a user's own settings of the variables win."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name in ("tensorflow", "absl", "h5py", "tensorflow_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())


@contextmanager
def stderr_to_file() -> Iterator[None]:
    """File descriptor 2 (C libraries write there directly) goes to a temporary file; replayed on error."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            _restore(saved)
            captured.seek(0)
            os.write(2, captured.read())
            raise
        else:
            _restore(saved)


def _restore(saved: int) -> None:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with stderr_to_file():
            self.loader.exec_module(module)
        try:
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
        except ImportError:
            pass


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the first import of TensorFlow; then steps aside."""

    def find_spec(self, name, path, target=None):
        if name not in QUIET_MODULES:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec
