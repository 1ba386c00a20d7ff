"""Shared fixtures: a real Label Studio server for the active-learning round trip."""

from __future__ import annotations

import pytest

import label_studio_server


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> label_studio_server.LabelStudioServer:
    """A running Label Studio with a known user; skips only when its virtualenv is not installed."""
    if label_studio_server.label_studio_executable() is None:
        pytest.skip(
            f"Label Studio is not installed in {label_studio_server.label_studio_venv()}; "
            "run .ci/install_label_studio.sh (or set LABEL_STUDIO_VENV)"
        )
    workdir = tmp_path_factory.mktemp("label-studio")
    document_root = tmp_path_factory.mktemp("label-studio-files")
    server = label_studio_server.start_server(workdir, document_root)
    yield server
    server.stop()
