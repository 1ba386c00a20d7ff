"""Session fixtures of the listen tests: a household recording, a small trained detector, a hub export."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile

from homesound_testkit.listen import (
    RATE, Broker, Household, embed_clips, household, pcm16, train_small_detector, training_clips,
    training_sequences,
)


@dataclass(frozen=True)
class HouseholdFile:
    recording: Household
    path: Path  # 16-bit PCM WAV at 44.1 kHz
    pcm: bytes  # the same samples as raw s16le, for stdin

    @property
    def truth(self) -> list[tuple[str, float, float]]:
        return self.recording.truth

    def pcm_until(self, seconds: float, start: float = 0.0) -> bytes:
        return self.pcm[int(start * RATE) * 2: int(seconds * RATE) * 2]


@pytest.fixture(scope="session")
def household_audio(shared_data, tmp_path_factory) -> HouseholdFile:
    recording = household(shared_data)
    path = tmp_path_factory.mktemp("household") / "household.wav"
    pcm = pcm16(recording.samples)
    soundfile.write(str(path), np.frombuffer(pcm, dtype="<i2"), RATE, subtype="PCM_16")
    return HouseholdFile(recording, path, pcm)


@pytest.fixture(scope="session")
def listen_model(shared_data, checkpoint_embedder, tmp_path_factory) -> Path:
    """A crying/laughter detector trained on real clips embedded with the random test VGGish."""
    clips = training_clips(shared_data)
    embeddings = embed_clips(clips, checkpoint_embedder)
    sequences = training_sequences(clips, embeddings, checkpoint_embedder.embedder_id)
    detector = train_small_detector(sequences, {checkpoint_embedder.embedder_id: checkpoint_embedder.provenance})
    path = tmp_path_factory.mktemp("model") / "detector.pt"
    detector.save(path)
    return path


@pytest.fixture(scope="session")
def hub_dir(listen_model, household_audio, tmp_path_factory) -> Path:
    """`homesound export --hub` of the detector: float32 and float16 VGGish, measured on the household audio."""
    from homesound.cli import main

    directory = tmp_path_factory.mktemp("hub") / "hub"
    code = main(["export", "--model", str(listen_model), "--hub", str(directory), "--quantize", "float16",
                 "--calibration-audio", str(household_audio.path)])
    assert code == 0
    return directory


@pytest.fixture
def broker(tmp_path):
    executable = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None)
    if executable is None:
        pytest.skip("mosquitto is not installed (CI installs it with .ci/install_mosquitto.sh)")
    server = Broker(executable, tmp_path)
    server.start()
    yield server
    server.stop()
