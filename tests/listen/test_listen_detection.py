"""`homesound listen` on a household recording with known event times: as a file (TensorFlow + torch) and
on stdin through the hub runtime (no TensorFlow, no torch): the same probabilities as batch detection,
crying events within 1.5 s of the truth.

The detector is trained on clips embedded with RANDOM VGGish weights; what it can and cannot tell
apart with them is explained in support.py: event times are asserted for (Donate-a-cry) crying,
laughter only through the probabilities.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from homesound.cli import main
from homesound_testkit.listen import CLASSES, HEAVY_MODULES, ListenProcess, events_match, hub_environment

MIN_EVENT = "1.92"  # two seconds: single-second blips of the weak random-feature detector are not events


@pytest.fixture(scope="module")
def batch_probabilities(listen_model, household_audio, checkpoint_embedder):
    """What `homesound detect` computes: the whole file embedded at once, the detector over all of it."""
    from classify.detector import Detector
    from embed.pipeline import embed_file

    embeddings = embed_file(household_audio.path, checkpoint_embedder)
    detector = Detector.load(listen_model)
    return detector.probabilities(embeddings.embedding, embeddings.embedder_id)


def crying(events):
    return [event for event in events if event[0] == "crying"]


def ended_events(records):
    return [(r["label"], r["start"], r["end"]) for r in records if r["type"] == "event" and r["state"] == "end"]


def hop_probabilities(records):
    return np.array([[r["probabilities"][label] for label in CLASSES] for r in records if r["type"] == "hop"])


def test_listening_to_a_file_equals_detect_and_finds_the_crying(listen_model, household_audio, vggish_files,
                                                                batch_probabilities, tmp_path, capsys):
    code = main(["listen", "--model", str(listen_model), "--source", str(household_audio.path), "--fast",
                 "--probabilities", "--min-event", MIN_EVENT])
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    streamed = hop_probabilities(records)
    assert streamed.shape == batch_probabilities.shape
    np.testing.assert_allclose(streamed, batch_probabilities, atol=1e-5)
    assert [r["status"] for r in records if r["type"] == "status"] == ["connected", "ended"]

    events_csv = tmp_path / "events.csv"
    assert main(["detect", str(household_audio.path), "--model", str(listen_model), "--out", str(events_csv),
                 "--vggish", str(vggish_files.checkpoint), "--min-event", MIN_EVENT]) == 0
    table = pd.read_csv(events_csv)
    detected = sorted(zip(table["label"], table["start"].round(2), table["end"].round(2)))
    listened = sorted((label, round(start, 2), round(end, 2)) for label, start, end in ended_events(records))
    assert listened == detected
    assert events_match(crying(listened), crying(household_audio.truth)), (listened, household_audio.truth)
    # Each start is reported before its end, and no later than the hop that made it certain.
    starts = [r for r in records if r["type"] == "event" and r["state"] == "start"]
    assert len(starts) == len(listened) and all(r["end"] - r["start"] <= 2 * 0.96 + 1e-6 for r in starts)


def test_the_hub_runtime_listens_on_stdin_without_tensorflow_or_torch(hub_dir, household_audio, tmp_path,
                                                                      batch_probabilities):
    env, report = hub_environment(tmp_path / "hub-site")
    listener = ListenProcess(["--hub", str(hub_dir), "--source", "-", "--rate", "44100", "--format", "s16le",
                              "--probabilities", "--min-event", MIN_EVENT], env, tmp_path / "stderr.txt")
    listener.feed(household_audio.pcm)
    listener.close_stdin()
    assert listener.finish() == 0, listener.stderr_text()

    imported = set(json.loads(report.read_text()))
    assert not imported & set(HEAVY_MODULES), imported & set(HEAVY_MODULES)
    assert "ai_edge_litert" in imported and "numpy" in imported
    assert "ai-edge-litert" in listener.stderr_text()

    streamed = hop_probabilities(listener.records)
    assert streamed.shape == batch_probabilities.shape
    # float32 TFLite VGGish vs TensorFlow: raw embeddings differ by ~1e-5, a rare uint8 step at most.
    assert np.abs(streamed - batch_probabilities).max() < 0.02
    assert np.corrcoef(streamed[:, 1], batch_probabilities[:, 1])[0, 1] > 0.999
    assert events_match(crying(listener.events()), crying(household_audio.truth)), listener.events()


def test_the_hub_stream_equals_the_hub_on_the_whole_file(hub_dir, household_audio):
    """Streaming == batch on the hub path too: same TFLite network, numpy detector stepped vs whole."""
    from classify.portable import PortableDetector
    from embed.pipeline import waveform_chunks
    from embed.streaming import StreamingEmbedder
    from homesound_hub.bundle import load_hub

    hub = load_hub(hub_dir)
    samples = household_audio.recording.samples[: 44100 * 20]
    chunks = list(waveform_chunks([samples], 44100, 8))
    raw = np.concatenate(hub.embedder.raw_embeddings(chunks))
    batch = PortableDetector.probabilities(hub.detector, hub.embedder.postprocess(raw), hub.embedder.embedder_id)
    stream, detector_stream = StreamingEmbedder(hub.embedder, 44100, filter_table=hub.filter_table), \
        hub.detector.stream()
    hops = stream.push(samples[:300_000]) + stream.push(samples[300_000:]) + stream.finish()
    stepped = np.stack([detector_stream.push(hop.embedding, hub.embedder.embedder_id) for hop in hops])
    np.testing.assert_allclose(stepped, batch, atol=1e-5)


def test_export_reports_the_embedding_error_of_each_variant(hub_dir):
    manifest = json.loads((hub_dir / "manifest.json").read_text())
    float32, float16 = manifest["variants"]["float32"], manifest["variants"]["float16"]
    assert float32["error_vs_source"]["max_relative_raw_error"] < 1e-4
    assert float32["error_vs_source"]["examples"] > 50
    assert 0 < float16["error_vs_float32"]["max_abs_raw_error"]
    assert float16["bytes"] < 0.6 * float32["bytes"]
    assert manifest["detector"]["classes"] == list(CLASSES)
    assert {"detector.npz", "vggish_pca_params.npz", "vggish_float32.tflite", "vggish_float16.tflite"} <= \
        {p.name for p in hub_dir.iterdir()}
