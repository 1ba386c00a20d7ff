"""Shared fixtures: the real data beside the checkout, random VGGish weights in real formats, and a real
Label Studio server for the active-learning round trip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from homesound_testkit.shared_data import find_shared_data
from homesound_testkit import label_studio_server

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    found = find_shared_data()
    if found is None:
        pytest.fail("../shared/data (real clips and AudioSet metadata) is missing beside the checkout")
    return found


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    """The ffmpeg executable; tests that need it skip where it is missing (.ci/run installs it)."""
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg; .ci/run installs it)")
    return path


@pytest.fixture(scope="session")
def vggish_files(tmp_path_factory):
    """Deterministic random VGGish: TF1 checkpoint (original names), PCA npz, Hub-signature SavedModel."""
    from embed.random_weights import write_random_vggish

    return write_random_vggish(tmp_path_factory.mktemp("vggish"), seed=0)


@pytest.fixture(scope="session")
def local_hub(vggish_files):
    """The random VGGish SavedModel served like a TF Hub handle on 127.0.0.1."""
    from homesound_testkit.tf_hub import serve_savedmodel

    with serve_savedmodel(vggish_files.savedmodel) as server:
        yield server


@pytest.fixture(scope="session")
def checkpoint_embedder(vggish_files):
    from embed.embedder import load_embedder

    return load_embedder(str(vggish_files.checkpoint), str(vggish_files.pca))


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


@pytest.fixture(scope="session")
def yamnet_tflite(shared_data) -> Path:
    """Google's real YAMNet as TFLite (../shared/models/yamnet), with its class map beside it."""
    path = shared_data.parent / "models" / "yamnet" / "yamnet.tflite"
    if not path.is_file():
        pytest.fail(f"{path} (the real YAMNet weights) is missing beside the checkout")
    return path
