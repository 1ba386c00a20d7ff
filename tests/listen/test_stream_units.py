"""The pieces of live detection: PCM decoding, sources, incremental embedding, numpy detector, live events."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch

from classify.config import EventSettings, ModelConfig
from classify.detector import Detector
from classify.events import extract_events
from classify.model import SequenceDetector
from classify.portable import PortableDetector, export_portable
from classify.stream import LiveDetector
from homesound_hub.sources import (
    PCM_FORMATS, FileSource, PcmDecoder, PcmSource, SourceError, SourceOptions, SourceReader, SourceSetupError,
    SourceStatus, iterate_blocks, open_source,
)

RNG = np.random.default_rng(0)


def random_detector(rnn: str = "gru", layers: int = 1, seed: int = 0) -> Detector:
    torch.manual_seed(seed)
    model = SequenceDetector(ModelConfig(classes=("crying", "laughter"), rnn=rnn, layers=layers))
    model.eval()
    return Detector(model, {"crying": 0.5, "laughter": 0.6}, "audioset_uint8", ("test-embedder",))


# --- PCM ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PCM_FORMATS))
def test_pcm_formats_decode_to_the_same_float_samples(name):
    fmt = PCM_FORMATS[name]
    signal = np.round(RNG.uniform(-0.9, 0.9, (300, 2)) * 100) / 128  # exactly representable in every format
    if name == "s24le":
        ints = np.round(signal * fmt.scale).astype("<i4")
        data = np.stack([ints & 0xFF, (ints >> 8) & 0xFF, (ints >> 16) & 0xFF], axis=-1).astype(np.uint8).tobytes()
    else:
        data = (signal * fmt.scale + fmt.offset).astype(fmt.dtype).tobytes()
    decoder = PcmDecoder(name, channels=2)
    pieces = [decoder.decode(data[i:i + 7]) for i in range(0, len(data), 7)]  # frames split across reads
    np.testing.assert_allclose(np.concatenate(pieces), signal.mean(axis=1), atol=1e-9)
    assert decoder.leftover_bytes() == 0


def test_pcm_decoder_silences_nan_and_keeps_partial_frames():
    decoder = PcmDecoder("f32le", channels=1)
    data = np.array([0.5, np.nan, np.inf, -0.25], dtype="<f4").tobytes()
    assert list(decoder.decode(data + b"\x00\x00")) == [0.5, 0.0, 0.0, -0.25]
    assert decoder.nonfinite_samples == 2 and decoder.leftover_bytes() == 2


def test_unknown_pcm_format_and_bad_channels_are_refused():
    with pytest.raises(SourceError, match="unknown PCM format"):
        PcmDecoder("s12le", 1)
    with pytest.raises(SourceError, match="channels"):
        PcmDecoder("s16le", 0)


def test_raw_pcm_source_refuses_a_wav_file_on_stdin(tmp_path, household_audio):
    read_end, write_end = os.pipe()
    with open(household_audio.path, "rb") as wav:
        os.write(write_end, wav.read(4096))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as stream:
        source = PcmSource(stream, 44100, 1, "s16le")
        with pytest.raises(SourceError, match="starts like a WAV file"):
            list(iterate_blocks(source))


def test_open_source_explains_each_kind_of_mistake(tmp_path):
    with pytest.raises(SourceError, match="needs --rate"):
        open_source("-", SourceOptions())
    with pytest.raises(SourceError, match="not found"):
        open_source(str(tmp_path / "missing.wav"), SourceOptions())
    assert open_source("rtsp://user:secret@camera/stream", SourceOptions()).description == \
        "network stream rtsp://user:***@camera/stream"


def test_microphone_without_portaudio_says_what_to_install():
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):  # no sounddevice package, or no PortAudio library under it
        source = open_source("mic", SourceOptions())
        with pytest.raises(SourceSetupError, match="apt-get install libportaudio2"):
            source.open()
    else:
        pytest.skip("PortAudio is installed here")


# --- background reading -----------------------------------------------------------------------------------------


def test_reader_reports_a_stall_then_the_audio_again_then_the_end():
    read_end, write_end = os.pipe()
    stream = os.fdopen(read_end, "rb")
    reader = SourceReader(PcmSource(stream, 16000, 1, "s16le"), stall_seconds=0.5)
    reader.start()
    items = []

    def collect(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            item = reader.next(timeout=0.05)
            if item is not None:
                items.append(item)

    os.write(write_end, np.zeros(1600, "<i2").tobytes())
    collect(1.0)
    os.write(write_end, np.zeros(1600, "<i2").tobytes())
    os.close(write_end)
    collect(0.5)
    reader.stop()
    statuses = [item.status for item in items if isinstance(item, SourceStatus)]
    assert statuses == ["connected", "stalled", "ended"]
    blocks = [item for item in items if not isinstance(item, SourceStatus)]
    assert sum(len(b.samples) for b in blocks) == 3200 and {b.segment for b in blocks} == {1}


def test_file_source_at_real_time_takes_as_long_as_the_audio(household_audio):
    import soundfile

    short = household_audio.path.with_name("short.wav")
    soundfile.write(str(short), np.zeros(44100 // 2), 44100)
    started = time.monotonic()
    samples = sum(len(block) for block in iterate_blocks(FileSource(str(short), realtime=True)))
    assert samples == 22050 and 0.45 <= time.monotonic() - started < 1.5


# --- incremental embedding ------------------------------------------------------------------------------------


def test_streaming_embedder_equals_the_whole_file_in_any_block_sizes(vggish_files, household_audio):
    from embed.pipeline import embed_waveform
    from embed.streaming import StreamingEmbedder
    from embed.embedder import EmbedderConfig, load_embedder

    embedder = load_embedder(config=EmbedderConfig(str(vggish_files.checkpoint), str(vggish_files.pca),
                                                   batch_size=1))
    samples = household_audio.recording.samples[: 44100 * 12]
    whole = embed_waveform(samples, 44100, embedder)
    audio = []
    stream = StreamingEmbedder(embedder, 44100, on_audio=audio.append)
    hops, position = [], 0
    while position < len(samples):
        size = int(RNG.integers(1, 9000))
        hops += stream.push(samples[position:position + size])
        position += size
    hops += stream.finish()
    assert [hop.index for hop in hops] == list(range(len(whole)))
    np.testing.assert_array_equal(np.stack([h.embedding for h in hops]), whole.embedding)
    np.testing.assert_array_equal(np.stack([h.raw_embedding for h in hops]), whole.raw_embedding)
    assert abs(sum(len(a) for a in audio) - 12 * 16000) <= 1


# --- the detector without torch ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rnn,layers", [("gru", 1), ("gru", 2), ("lstm", 2)])
def test_numpy_detector_equals_torch(tmp_path, rnn, layers):
    detector = random_detector(rnn, layers)
    path = export_portable(detector, tmp_path / "detector.npz")
    portable = PortableDetector.load(path)
    embedding = RNG.integers(0, 256, (120, 128)).astype(np.uint8)
    expected = detector.probabilities(embedding, "test-embedder")
    np.testing.assert_allclose(portable.probabilities(embedding, "test-embedder"), expected, atol=1e-6)
    stream = portable.stream()
    stepped = np.stack([stream.push(row, "test-embedder") for row in embedding])
    np.testing.assert_allclose(stepped, expected, atol=1e-6)
    assert portable.thresholds == detector.thresholds and portable.classes == detector.classes


def test_numpy_detector_refuses_other_embeddings(tmp_path):
    portable = PortableDetector.load(export_portable(random_detector(), tmp_path / "d.npz"))
    with pytest.raises(Exception, match="trained on embeddings from test-embedder"):
        portable.probabilities(np.zeros((3, 128), np.uint8), "another-embedder")
    with pytest.raises(Exception, match="audioset_uint8"):
        portable.probabilities(np.zeros((3, 128), np.float32), "test-embedder")


# --- live events ----------------------------------------------------------------------------------------------


def test_live_detector_gives_the_batch_events_and_closes_them_at_a_break():
    detector = random_detector()
    embedding = RNG.integers(0, 256, (200, 128)).astype(np.uint8)
    embedding[40:70] = 250  # a long, loud stretch gives the random model something to react to
    probabilities = detector.probabilities(embedding, "test-embedder")
    rules = EventSettings(on_threshold=float(np.quantile(probabilities, 0.85)),
                          off_threshold=float(np.quantile(probabilities, 0.75)), min_event_seconds=1.92,
                          merge_gap_seconds=1.92).rules(detector.thresholds)
    expected = extract_events(probabilities, detector.classes, rules, detector.frames.hop_seconds)
    assert len(expected) >= 2, "the planted stretch should give events"

    live = LiveDetector(detector.stream(), detector.classes, rules, "test-embedder", "audioset_uint8",
                        detector.frames.hop_seconds)
    updates = []
    for row in embedding:
        result = live.push(row, row.astype(np.float32))
        updates += result.updates
    updates += live.close_events()
    ended = sorted((u.event for u in updates if u.kind == "end"), key=lambda e: (e.start, e.label))
    assert [(e.label, e.start, e.end) for e in ended] == [(e.label, e.start, e.end) for e in expected]
    np.testing.assert_allclose([e.mean_probability for e in ended], [e.mean_probability for e in expected],
                               atol=1e-6)
    starts = [u.event for u in updates if u.kind == "start"]
    assert sorted((e.label, e.start) for e in starts) == sorted((e.label, e.start) for e in expected)

    # A break: the open event ends, state is forgotten, times continue from the new segment's start.
    live.push(embedding[45], embedding[45].astype(np.float32))
    live.restart(500.0)
    result = live.push(embedding[0], embedding[0].astype(np.float32))
    assert result.start_seconds == 500.0
    fresh = detector.stream()
    np.testing.assert_allclose(result.probabilities, fresh.push(embedding[0], "test-embedder"), atol=1e-6)


def test_reader_stops_promptly_even_with_a_blocked_pipe():
    read_end, write_end = os.pipe()
    reader = SourceReader(PcmSource(os.fdopen(read_end, "rb"), 16000, 1, "s16le"), stall_seconds=60)
    reader.start()
    assert isinstance(reader.next(timeout=2), SourceStatus)
    stopper = threading.Thread(target=reader.stop)
    started = time.monotonic()
    stopper.start()
    stopper.join(timeout=5)
    assert not stopper.is_alive() and time.monotonic() - started < 4
    os.close(write_end)


# --- notification settings --------------------------------------------------------------------------------------


def test_mqtt_urls_and_names(monkeypatch):
    from homesound.errors import HomesoundError
    from homesound_hub.notify import MqttSettings, topic_safe

    monkeypatch.setenv("HOMESOUND_MQTT_PASSWORD", "from-env")
    plain = MqttSettings.from_url("mqtt://hub:p%40ss@broker.local:1884", node_id="kitchen")
    assert (plain.host, plain.port, plain.username, plain.password, plain.tls) == \
        ("broker.local", 1884, "hub", "p@ss", False)
    secure = MqttSettings.from_url("mqtts://user@broker.local")
    assert (secure.port, secure.tls, secure.password) == (8883, True, "from-env")
    with pytest.raises(HomesoundError, match="mqtt://"):
        MqttSettings.from_url("http://broker.local")
    assert topic_safe("baby crying/room #2") == "baby_crying_room_2"


def test_export_kinds_are_mutually_exclusive(tmp_path, capsys):
    from homesound.cli import main

    with pytest.raises(SystemExit) as raised:
        main(["export", "--hub", str(tmp_path / "hub"), "--out", str(tmp_path / "x.parquet")])
    assert raised.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert main(["export", "--hub", str(tmp_path / "hub")]) == 2
    assert "--hub needs --model" in capsys.readouterr().err
    assert main(["export", "--out", str(tmp_path / "x.parquet")]) == 2
    assert "--out needs --workspace" in capsys.readouterr().err


def test_listening_runs_numpy_blas_on_one_thread(monkeypatch):
    """numpy is loaded before listen starts, so only limiting the running BLAS works; a user's setting wins."""
    from threadpoolctl import threadpool_info

    from homesound_hub.jobs import single_blas_thread

    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    if not blas or all(pool["num_threads"] == 1 for pool in blas):
        pytest.skip("numpy's BLAS runs one thread here already")
    before = [pool["num_threads"] for pool in blas]
    with single_blas_thread():
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {1}
    assert [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"] == before
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    with single_blas_thread():
        assert [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"] == before
