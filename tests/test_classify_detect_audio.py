"""`homesound detect` on a real long recording assembled from the shared clips, with known event times.

Only random VGGish weights exist offline, and with them crying is NOT really separable from
household noise (measured on 44.1 kHz sources held out by source: AP 0.46 at prevalence 0.32).
What random-network embeddings do keep is coarse spectral shape: the Donate-a-cry phone clips are
band-limited (8 kHz recordings) against full-band noise and room tone. The test uses exactly that
learnable difference to check the mechanics end to end — embed -> store -> train -> detect on a
file -> events at the right times — with crying clips from Donate-a-cry sources not seen in
training. It shows that timing and plumbing are right, not that crying is recognised. Laughter
(one source recording in the shared data) is trained on but only its format is checked.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import soundfile

from homesound_testkit.clip_assembly import FRAME_SAMPLES, HOP_SECONDS, SAMPLE_RATE, assemble
from homesound.cli import main
from homesound.workspace import Workspace
from homesound.workspace.recordings import (
    StoredEmbedding,
    register_embedder,
    save_recording,
)
from homesound.workspace.training_data import StrongLabel, upsert_strong_labels

HOP = HOP_SECONDS
CLASSES = ("crying", "laughter")
TRAINING_RECORDINGS = 5


# The origins this test's premise rests on (band-limited phone crying against full-band household sound),
# chosen by origin so that clips added to the shared data later do not change what it draws.
ORIGINS = {"crying": "donateacry", "laughter": "giulbia/", "noise": "ESC-50 via giulbia", "silence": "giulbia/"}


def choose(clips: pd.DataFrame, label: str, sources_part: int, count: int, seed: int) -> pd.DataFrame:
    """Clips of one label from every other source (part 0 or 1): training and test never share a source."""
    of_label = clips[(clips.label == label) & clips.origin.str.startswith(ORIGINS[label])].sort_values("path")
    sources = sorted(of_label.source.unique())
    if len(sources) > 1:
        of_label = of_label[of_label.source.isin(sources[sources_part::2])]
    else:  # one source (laughter, silence): different clips of it, the honest best this data allows
        paths = of_label.path.tolist()
        half = paths[: len(paths) // 2] if sources_part == 0 else paths[len(paths) // 2:]
        of_label = of_label[of_label.path.isin(half)]
    return of_label.sample(count, random_state=seed)


@pytest.fixture(scope="module")
def long_recording_case(tmp_path_factory, shared_data, vggish_files, checkpoint_embedder):
    from embed.pipeline import embed_waveform

    data = shared_data
    clips = pd.read_csv(data / "clips.csv")
    directory = tmp_path_factory.mktemp("detect-audio")

    # Training: clips of training sources, assembled into a few recordings (so the model sees events
    # begin and end), embedded in one pass, stored with per-second labels.
    training_rows = pd.concat([choose(clips, "crying", 0, 16, 1), choose(clips, "laughter", 0, 6, 1),
                               choose(clips, "noise", 0, 12, 1), choose(clips, "silence", 0, 6, 1)])
    training_rows = training_rows.sample(frac=1, random_state=2)
    training_audio, training_placed = assemble(zip(data / training_rows.path, training_rows.label))
    embedded = embed_waveform(training_audio, SAMPLE_RATE, checkpoint_embedder)
    workspace = directory / "home.db"
    with Workspace(workspace) as ws:
        register_embedder(ws, embedded.embedder_id, embedded.provenance)
        for part in range(TRAINING_RECORDINGS):
            clips_of_part = training_placed[part::TRAINING_RECORDINGS]
            frames = np.concatenate([embedded.embedding[c.first_frame: c.first_frame + c.frames]
                                     for c in clips_of_part])
            labels = np.array([[float(c.label == target) for target in CLASSES]
                               for c in clips_of_part for _ in range(c.frames)])
            content = hashlib.sha256(frames.tobytes()).hexdigest()
            save_recording(ws, path=f"training-{part}.wav", size=None, mtime_ns=None, content_sha256=content,
                           status="embedded",
                           embedding=StoredEmbedding(content, embedded.embedder_id, frames, None, HOP))
            upsert_strong_labels(ws, [StrongLabel(content, second, target, float(labels[second, column]), "clips.csv")
                                      for second in range(len(labels)) for column, target in enumerate(CLASSES)])
    model = directory / "detector.pt"
    assert main(["train", "--workspace", str(workspace), "--out", str(model), "--train-splits", "train,test",
                 "--epochs", "30", "--patience", "8", "--quiet"]) == 0

    # The long household recording: background from test sources with crying and laughter placed in it.
    background = pd.concat([choose(clips, "noise", 1, 8, 3), choose(clips, "silence", 1, 5, 3)]).sample(
        frac=1, random_state=4)
    events = pd.concat([choose(clips, "crying", 1, 3, 5), choose(clips, "laughter", 1, 2, 5)]).sample(
        frac=1, random_state=6)
    order = []
    for index, row in enumerate(background.itertuples(index=False)):
        order.append(row)
        if index % 2 == 1 and index // 2 < len(events):
            order.append(next(events.iloc[[index // 2]].itertuples(index=False)))
    order = pd.DataFrame(order)
    recording_audio, placed = assemble(zip(data / order.path, order.label))
    recording = directory / "household.wav"
    soundfile.write(recording, recording_audio, SAMPLE_RATE, subtype="PCM_16")
    return model, recording, placed, (vggish_files.checkpoint, vggish_files.pca), directory


def test_detect_finds_planted_events_where_they_were_put(long_recording_case):
    model, recording, placed, (checkpoint, pca), directory = long_recording_case
    out, timeline = directory / "events.json", directory / "timeline"
    assert main(["detect", str(recording), "--model", str(model), "--vggish", str(checkpoint), "--pca", str(pca),
                 "--out", str(out), "--timeline", str(timeline)]) == 0
    events = pd.DataFrame(json.loads(out.read_text()))
    duration = soundfile.info(recording).duration
    assert set(events.label) <= set(CLASSES)
    assert (events.start >= 0).all() and (events.end <= duration + 1e-6).all() and (events.end > events.start).all()
    # Event boundaries are whole embedding frames from the start of the file.
    for column in ("start", "end"):
        assert np.allclose(events[column] / HOP, np.round(events[column] / HOP), atol=1e-3)
    assert (events.recording == str(recording)).all()
    assert (timeline / "household.png").stat().st_size > 10_000

    crying = [p for p in placed if p.label == "crying"]
    found = events[events.label == "crying"]
    assert len(crying) == 3 and len(placed) > 12
    for truth in crying:  # every planted (band-limited) clip is found, starting near where it was put
        overlapping = found[(found.start < truth.end) & (found.end > truth.start)]
        assert len(overlapping), f"crying at {truth.start:.2f}-{truth.end:.2f} s not detected"
        assert abs(overlapping.start.min() - truth.start) <= 2 * HOP
    # Most detected time is planted time.
    detected_seconds = (found.end - found.start).sum()
    true_seconds = sum(min(e.end, t.end) - max(e.start, t.start) for e in found.itertuples() for t in crying
                       if e.start < t.end and e.end > t.start)
    assert true_seconds / detected_seconds > 0.6


def test_detect_refuses_a_model_trained_on_other_embeddings(long_recording_case, tmp_path, capsys):
    from classify.config import TrainConfig
    from homesound_testkit.synthetic import planted_sequences
    from classify.training import train_detector

    _, recording, _, (checkpoint, pca), _ = long_recording_case
    foreign = tmp_path / "synthetic.pt"
    train_detector(planted_sequences(40), train_config=TrainConfig(epochs=1), progress=False).save(foreign)
    assert main(["detect", str(recording), "--model", str(foreign), "--vggish", str(checkpoint), "--pca", str(pca),
                 "--out", str(tmp_path / "e.csv")]) == 2
    message = capsys.readouterr().err
    assert "trained on embeddings from synthetic-planted-v1" in message and "vggish-checkpoint-" in message
    assert not (tmp_path / "e.csv").exists()


def test_unreadable_files_are_reported_and_the_rest_detected(long_recording_case, tmp_path, capsys):
    model, recording, placed, (checkpoint, pca), _ = long_recording_case
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt nonsense")
    excerpt = tmp_path / "excerpt.flac"  # the first planted clip and a little around it, as FLAC
    first = min(p.first_frame for p in placed if p.label == "crying")
    audio, rate = soundfile.read(recording)
    soundfile.write(excerpt, audio[(first - 3) * FRAME_SAMPLES:(first + 10) * FRAME_SAMPLES], rate)
    out = tmp_path / "events.csv"
    assert main(["detect", str(broken), str(excerpt), "--model", str(model), "--vggish", str(checkpoint),
                 "--pca", str(pca), "--out", str(out)]) == 1
    assert "broken.wav" in capsys.readouterr().err
    events = pd.read_csv(out)
    assert set(events.recording) == {str(excerpt)} and "crying" in set(events.label)


def test_detect_in_files_reports_bad_files_as_data(long_recording_case, tmp_path):
    """The job behind `homesound detect FILE...`, without a parser: a file it cannot read is a (path, why) in the
    result and the other files are detected."""
    from classify.detect_jobs import DetectInFilesJob, DetectionOutputs, detect_in_files
    from embed.embedder import EmbedderConfig

    model, recording, _, (checkpoint, pca), _ = long_recording_case
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt nonsense")
    result = detect_in_files(DetectInFilesJob(
        files=(str(broken), str(recording)), model=str(model), outputs=DetectionOutputs(events=str(tmp_path / "e.csv")),
        embedder=EmbedderConfig(source=str(checkpoint), pca=str(pca))))
    ((path, reason),) = result.failures
    assert path == str(broken) and reason
    (detection,) = result.detections
    assert detection.recording == str(recording) and result.run_id is None
    assert result.events_per_class["crying"] == len(detection.events) - result.events_per_class["laughter"] > 0
    assert result.hours == pytest.approx(len(detection.probabilities) * HOP / 3600)
    assert len(pd.read_csv(tmp_path / "e.csv")) == len(detection.events)
