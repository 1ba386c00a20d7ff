"""YAMNet beside VGGish: the real .tflite on real clips, a Hub-signature SavedModel, the archive job,
export, a train -> detect round in a workspace, and the hub runtime without TensorFlow or torch."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from embed.embedder import EmbedderConfig, load_embedder
from embed.pipeline import embed_file, embed_waveform, waveform_chunks
from homesound.cli import main
from homesound.errors import ModelSourceError, ProvenanceMismatchError
from homesound.frames import YAMNET_FRAMES
from homesound_testkit.tf_hub import serve_savedmodel
from homesound_testkit.yamnet import write_random_yamnet_savedmodel

REPO = Path(__file__).resolve().parents[1]
CRYING_CLASSES = {"Crying, sobbing", "Baby cry, infant cry"}


@pytest.fixture(scope="module")
def yamnet(yamnet_tflite):
    return load_embedder(config=EmbedderConfig(model="yamnet", source=str(yamnet_tflite)))


@pytest.fixture(scope="module")
def clips(shared_data) -> pd.DataFrame:
    table = pd.read_csv(shared_data / "clips.csv")
    table["file"] = [str(shared_data / path) for path in table["path"]]
    return table


def pick(clips: pd.DataFrame, label: str, origin: str, count: int) -> list[str]:
    chosen = clips[(clips["label"] == label) & clips["origin"].str.startswith(origin)]
    return sorted(chosen["file"])[:count]


def test_tflite_frames_on_the_vggish_grid_with_plausible_class_scores(yamnet, clips):
    path = pick(clips, "crying", "giulbia/baby_cry_detection", 1)[0]
    first, second = embed_file(path, yamnet), embed_file(path, yamnet)
    samples, rate = soundfile.read(path, always_2d=True)
    whole = np.concatenate(list(waveform_chunks([samples.mean(axis=1)], rate, 1000)))
    frames = (len(whole) - 240) // 15360
    assert first.embedding.shape == (frames, 1024) and first.embedding.dtype == np.float16
    assert first.raw_embedding.shape == (frames, 1024) and first.class_scores.shape == (frames, 521)
    np.testing.assert_array_equal(first.start_seconds, np.arange(frames) * 0.96)
    np.testing.assert_array_equal(first.raw_embedding, second.raw_embedding)  # deterministic
    np.testing.assert_array_equal(first.class_scores, second.class_scores)
    assert first.class_scores.min() >= 0 and first.class_scores.max() <= 1
    # Frame n is YAMNet on the 15600 samples from n * 0.96 s: the VGGish example grid.
    (alone,) = yamnet.embed_chunks([whole[2 * 15360: 2 * 15360 + 15600]])
    np.testing.assert_allclose(alone.raw[0], first.raw_embedding[2], atol=1e-6)
    assert yamnet.class_names[0] == "Speech" and len(yamnet.class_names) == 521
    assert yamnet.embedder_id.startswith("yamnet-tflite-") and yamnet.frames == YAMNET_FRAMES


def test_crying_clips_hear_crying_and_noise_clips_do_not(yamnet, clips):
    def crying_rank(path: str) -> int:
        scores = embed_file(path, yamnet).class_scores.max(axis=0)
        order = [yamnet.class_names[i] for i in np.argsort(-scores)]
        return min(order.index(name) for name in CRYING_CLASSES)

    crying = [crying_rank(path) for path in pick(clips, "crying", "ESC-50 via giulbia", 6)]
    noise = [crying_rank(path) for path in pick(clips, "noise", "ESC-50 'vacuum", 3)]
    assert sum(rank < 5 for rank in crying) >= 5, crying  # a crying class among the top five
    assert min(noise) >= 5, noise


def test_bad_yamnet_sources_are_clear(tmp_path, yamnet_tflite):
    wav = tmp_path / "x.wav"
    soundfile.write(wav, np.zeros(16000), 16000)
    with pytest.raises(ModelSourceError, match=r"\.tflite file"):
        load_embedder(config=EmbedderConfig(model="yamnet", source=str(wav)))
    lonely = tmp_path / "yamnet.tflite"
    lonely.write_bytes(yamnet_tflite.read_bytes())
    with pytest.raises(ModelSourceError, match="yamnet_class_map.csv"):
        load_embedder(config=EmbedderConfig(model="yamnet", source=str(lonely)))
    (tmp_path / "yamnet_class_map.csv").write_text("index,mid,display_name\n0,/m/x,X\n")
    with pytest.raises(ModelSourceError, match="1 classes, expected 521"):
        load_embedder(config=EmbedderConfig(model="yamnet", source=str(lonely)))
    broken = tmp_path / "broken" / "yamnet.tflite"
    broken.parent.mkdir()
    broken.write_bytes(b"not a model")
    (broken.parent / "yamnet_class_map.csv").write_bytes((yamnet_tflite.parent / "yamnet_class_map.csv").read_bytes())
    with pytest.raises(ModelSourceError, match="not a TFLite model"):
        load_embedder(config=EmbedderConfig(model="yamnet", source=str(broken)))


# --- the TF Hub path: a SavedModel with Hub's signature, from a directory and from a handle -----------------


@pytest.fixture(scope="module")
def yamnet_savedmodel(tmp_path_factory, yamnet):
    return write_random_yamnet_savedmodel(tmp_path_factory.mktemp("yamnet") / "savedmodel", list(yamnet.class_names))


@pytest.mark.slow
def test_savedmodel_with_the_hub_signature_gives_every_other_patch(yamnet_savedmodel, yamnet):
    embedder = load_embedder(config=EmbedderConfig(model="yamnet", source=str(yamnet_savedmodel)))
    assert embedder.embedder_id.startswith("yamnet-savedmodel-") and embedder.class_names == yamnet.class_names
    waveform = np.random.default_rng(3).uniform(-0.5, 0.5, 16000 * 6)
    result = embed_waveform(waveform, 16000, embedder)
    chunk = next(waveform_chunks([waveform], 16000, 64)).astype(np.float32)
    assert len(result) == (len(chunk) - 240) // 15360 == 6
    for frame in (0, 3, 5):  # the model on frame n's window alone = frame n of the whole waveform
        scores, embeddings, _ = embedder.model(chunk[frame * 15360: frame * 15360 + 15600])
        np.testing.assert_allclose(embeddings.numpy()[0], result.raw_embedding[frame], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(scores.numpy()[0], result.class_scores[frame], atol=1e-5)
    assert np.isfinite(result.raw_embedding).all() and result.class_scores.shape == (6, 521)


@pytest.mark.slow
def test_hub_handle_downloads_once_into_tfhub_cache(tmp_path, monkeypatch, yamnet_savedmodel):
    with serve_savedmodel(yamnet_savedmodel, "/google/yamnet/1") as server:
        monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub-cache"))
        monkeypatch.setenv("HOMESOUND_YAMNET", f"http://127.0.0.1:{server.server_port}/google/yamnet/1")
        waveform = np.random.default_rng(4).uniform(-0.5, 0.5, 16000 * 3)
        first = embed_waveform(waveform, 16000, load_embedder(config=EmbedderConfig(model="yamnet")))
        second = embed_waveform(waveform, 16000, load_embedder(config=EmbedderConfig(model="yamnet")))
        assert len(server.requests) == 1  # the second load came from the cache
        np.testing.assert_array_equal(first.raw_embedding, second.raw_embedding)
        local = embed_waveform(waveform, 16000, load_embedder(config=EmbedderConfig(
            model="yamnet", source=str(yamnet_savedmodel))))
        np.testing.assert_array_equal(first.raw_embedding, local.raw_embedding)
        assert first.provenance["source_kind"] == "hub" and first.embedder_id.startswith("yamnet-hub-")
        with pytest.raises(ModelSourceError, match="cannot fetch YAMNet"):
            load_embedder(config=EmbedderConfig(model="yamnet", source=f"http://127.0.0.1:{server.server_port}/no/1"))


# --- the archive job, export ------------------------------------------------------------------------------


def embed_archive(folder: Path, workspace: Path, yamnet_tflite: Path, *extra: str) -> list[str]:
    return ["embed", str(folder), "--workspace", str(workspace), "--embedder", "yamnet", "--yamnet",
            str(yamnet_tflite), "--no-progress", *extra]


def stored_frames(workspace: Path) -> dict[str, tuple[bytes, bytes]]:
    import sqlite3

    with sqlite3.connect(workspace) as db:
        return {sha: (embedding, scores) for sha, embedding, scores in db.execute(
            "SELECT content_sha256, embedding, class_scores FROM embeddings")}


@pytest.fixture(scope="module")
def archive(tmp_path_factory, clips) -> Path:
    folder = tmp_path_factory.mktemp("archive")
    chosen = (pick(clips, "crying", "giulbia", 3) + pick(clips, "laughter", "giulbia", 3)
              + pick(clips, "noise", "DCASE", 2) + pick(clips, "crying", "donateacry", 2))
    for index, source in enumerate(chosen):
        (folder / f"{index:02d}_{Path(source).name}").write_bytes(Path(source).read_bytes())
    soundfile.write(folder / "long.wav", np.random.default_rng(5).uniform(-0.3, 0.3, (44100 * 30, 2)), 44100)
    return folder


@pytest.mark.slow
def test_archive_embed_resumes_after_kill_9_and_keeps_yamnet_apart(tmp_path, archive, yamnet_tflite, capsys):
    from homesound.workspace import Workspace, recordings

    reference = tmp_path / "reference.db"
    assert main(embed_archive(archive, reference, yamnet_tflite)) == 0
    expected = stored_frames(reference)
    assert len(expected) == len(list(archive.iterdir()))

    workspace = tmp_path / "killed.db"
    command = [sys.executable, "-m", "homesound.cli", *embed_archive(archive, workspace, yamnet_tflite, "--batch-size",
                                                                      "4")]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and len(_rows(workspace)) < 3:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = stored_frames(workspace) if workspace.exists() else {}
    assert all(expected[sha] == frames for sha, frames in partial.items())  # whatever landed is whole and right
    capsys.readouterr()
    assert main(embed_archive(archive, workspace, yamnet_tflite)) == 0
    assert stored_frames(workspace) == expected
    assert "unchanged" in capsys.readouterr().out
    assert main(embed_archive(archive, workspace, yamnet_tflite)) == 0  # nothing left to do
    assert f"unchanged  {len(expected):>6}" in capsys.readouterr().out

    with Workspace(workspace) as opened:
        (embedder_id,) = {row["embedder_id"] for row in opened.query("SELECT embedder_id FROM embeddings")}
        assert recordings.frame_spec(opened, embedder_id) == YAMNET_FRAMES
        assert recordings.class_names(opened, embedder_id)[:2] == ["Speech", "Child speech, kid speaking"]
        status = {e["embedder_id"]: e for e in recordings.status_section(opened)["embedders"]}[embedder_id]
        frames = sum(stored.embedding.shape[0] for _, stored in recordings.iter_embedded_recordings(opened))
        assert status["model"] == "yamnet" and status["stored_bytes"] < frames * 1600  # compact: < 1.6 kB per frame


def _rows(workspace: Path) -> list:
    import sqlite3

    if not workspace.exists():
        return []
    try:
        with sqlite3.connect(workspace, timeout=1) as db:
            return db.execute("SELECT content_sha256 FROM embeddings").fetchall()
    except sqlite3.OperationalError:
        return []


@pytest.mark.slow
def test_export_writes_float16_embeddings_and_class_scores(tmp_path, archive, yamnet_tflite, vggish_files, capsys):
    import pyarrow.parquet as pq

    from homesound.workspace import Workspace, recordings

    workspace = tmp_path / "w.db"
    assert main(embed_archive(archive, workspace, yamnet_tflite)) == 0
    out = tmp_path / "yamnet.parquet"
    assert main(["export", "--workspace", str(workspace), "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert str(table.schema.field("embedding").type) == "fixed_size_list<element: halffloat>[1024]"
    assert str(table.schema.field("class_scores").type) == "fixed_size_list<element: halffloat>[521]"
    metadata = json.loads(pq.ParquetFile(out).metadata.metadata[b"homesound"])
    (facts,) = metadata["embedders"].values()
    assert facts["frames"]["model"] == "yamnet" and len(facts["class_names"]) == 521
    with Workspace(workspace) as opened:
        row, stored = next(recordings.iter_embedded_recordings(opened, with_class_scores=True))
    first = table.filter(pq.read_table(out).column("path").cast("string").to_numpy() == row.path)
    np.testing.assert_array_equal(np.stack(first.column("embedding").to_pylist()).astype(np.float16), stored.embedding)
    np.testing.assert_allclose(np.stack(first.column("class_scores").to_pylist()), stored.class_scores, atol=1e-6)
    np.testing.assert_allclose(first.column("start_seconds").to_numpy(), stored.start_seconds)

    # VGGish beside it: one model per file, chosen by model name.
    small = tmp_path / "small"
    small.mkdir()
    (small / "one.wav").write_bytes(next(archive.glob("00_*")).read_bytes())
    assert main(["embed", str(small), "--workspace", str(workspace), "--vggish", str(vggish_files.checkpoint),
                 "--pca", str(vggish_files.pca), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["export", "--workspace", str(workspace), "--out", str(tmp_path / "both.parquet")]) == 2
    assert "--embedder vggish or --embedder yamnet" in capsys.readouterr().err
    assert main(["export", "--workspace", str(workspace), "--out", str(tmp_path / "v.parquet"),
                 "--embedder", "vggish"]) == 0
    assert str(pq.read_schema(tmp_path / "v.parquet").field("embedding").type) == \
        "fixed_size_list<element: uint8>[128]"


def test_embed_files_to_npz_with_class_scores(tmp_path, clips, yamnet_tflite, yamnet):
    path = pick(clips, "laughter", "ESC-50", 1)[0]
    out = tmp_path / "laugh.npz"
    assert main(["embed", path, "--out", str(out), "--yamnet", str(yamnet_tflite)]) == 0  # --yamnet implies it
    with np.load(out) as stored:
        assert stored["embedding"].dtype == np.float16 and stored["embedding"].shape[1] == 1024
        assert stored["class_scores"].shape == (len(stored["embedding"]), 521)
        assert list(stored["class_names"][:1]) == ["Speech"]
        assert json.loads(str(stored["frames"]))["model"] == "yamnet"
        assert str(stored["embedder_id"]) == yamnet.embedder_id


def test_embedder_option_mistakes_are_messages(tmp_path, archive, yamnet_tflite, capsys):
    for arguments, message in (
            (["--embedder", "yamnet", "--pca", "p.npz"], "with --embedder yamnet use --yamnet"),
            (["--embedder", "vggish", "--yamnet", str(yamnet_tflite)], "add --embedder yamnet")):
        assert main(["embed", str(archive), "--workspace", str(tmp_path / "w.db"), *arguments]) == 2
        assert message in capsys.readouterr().err


# --- train -> detect on YAMNet embeddings in a workspace ----------------------------------------------------


@pytest.fixture(scope="module")
def yamnet_workspace(tmp_path_factory, clips, yamnet_tflite):
    """Real clips embedded with the real YAMNet, each labeled per second with its clip's label."""
    from homesound.workspace import Workspace
    from homesound.workspace.training_data import StrongLabel, upsert_strong_labels

    folder = tmp_path_factory.mktemp("labeled")
    chosen = {"crying": pick(clips, "crying", "giulbia", 12) + pick(clips, "crying", "ESC-50 via", 8),
              "laughter": pick(clips, "laughter", "giulbia", 12) + pick(clips, "laughter", "ESC-50", 8),
              "noise": pick(clips, "noise", "ESC-50", 12) + pick(clips, "noise", "DCASE", 8)}
    for label, paths in chosen.items():
        (folder / label).mkdir()
        for path in paths:
            (folder / label / Path(path).name).write_bytes(Path(path).read_bytes())
    workspace = folder / "w.db"
    assert main(embed_archive(folder, workspace, yamnet_tflite)) == 0
    with Workspace(workspace) as opened:
        labels = []
        for row in opened.query("SELECT r.path, r.content_sha256, e.frames FROM recordings r"
                                " JOIN embeddings e ON e.content_sha256 = r.content_sha256"):
            label = Path(row["path"]).parent.name
            labels += [StrongLabel(row["content_sha256"], second, target, float(label == target), "test")
                       for second in range(row["frames"]) for target in ("crying", "laughter")]
        upsert_strong_labels(opened, labels)
    return workspace, folder


@pytest.mark.slow
def test_train_then_detect_on_yamnet_embeddings(tmp_path, yamnet_workspace, yamnet_tflite, vggish_files, capsys):
    from classify.detector import Detector

    workspace, folder = yamnet_workspace
    model = tmp_path / "detector.pt"
    assert main(["train", "--workspace", str(workspace), "--out", str(model), "--embedder", "yamnet",
                 "--epochs", "15", "--hidden-size", "32", "--projection-size", "32", "--quiet"]) == 0
    detector = Detector.load(model)
    assert detector.frames == YAMNET_FRAMES and detector.config.input_size == 1024
    assert detector.input_encoding == "float16" and detector.embedder_ids[0].startswith("yamnet-tflite-")

    events = tmp_path / "events.csv"
    assert main(["detect", "--workspace", str(workspace), "--model", str(model), "--out", str(events)]) == 0
    table = pd.read_csv(events)
    crying = table[table["label"] == "crying"]["recording"].map(lambda path: Path(path).parent.name)
    assert len(crying) and (crying == "crying").mean() > 0.7, table

    assert main(["evaluate", "--model", str(model), "--workspace", str(workspace), "--split", "test",
                 "--report", str(tmp_path / "report")]) == 0
    assert main(["rank", "--workspace", str(workspace), "--model", str(model), "--top", "4", "--dry-run",
                 "--out", str(tmp_path / "picks.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "picks.csv")) == 4

    one = next((folder / "crying").iterdir())
    assert main(["detect", str(one), "--model", str(model), "--out", str(tmp_path / "one.csv"),
                 "--yamnet", str(yamnet_tflite)]) == 0  # the detector's model is the default embedder
    capsys.readouterr()
    assert main(["detect", str(one), "--model", str(model), "--out", str(tmp_path / "two.csv"), "--vggish",
                 str(vggish_files.checkpoint), "--pca", str(vggish_files.pca)]) == 2
    assert "embed with --embedder yamnet" in capsys.readouterr().err
    with pytest.raises(ProvenanceMismatchError, match="these are vggish embeddings; embed with --embedder yamnet"):
        detector.check_embedder("vggish-checkpoint-0123456789abcdef")


# --- the hub: YAMNet's .tflite and the numpy detector, no TensorFlow, no torch --------------------------------


@pytest.fixture(scope="module")
def yamnet_detector(tmp_path_factory, shared_data, yamnet):
    from homesound_testkit.listen import load_clip, train_small_detector, training_clips, training_sequences

    clips = training_clips(shared_data, per_label=15)
    embeddings = [embed_waveform(load_clip(clip, 16000), 16000, yamnet).embedding for clip in clips]
    sequences = training_sequences(clips, embeddings, yamnet.embedder_id, count=60)
    detector = train_small_detector(sequences, {yamnet.embedder_id: yamnet.provenance}, frames=yamnet.frames)
    path = tmp_path_factory.mktemp("yamnet-model") / "detector.pt"
    detector.save(path)
    return path


@pytest.mark.slow
def test_hub_runtime_runs_yamnet_tflite_without_tensorflow_or_torch(tmp_path, yamnet_detector, yamnet_tflite,
                                                                    shared_data, yamnet):
    from classify.detector import Detector
    from homesound_hub.bundle import load_hub
    from homesound_testkit.listen import HEAVY_MODULES, ListenProcess, household, hub_environment, pcm16

    hub_dir = tmp_path / "hub"
    assert main(["export", "--model", str(yamnet_detector), "--hub", str(hub_dir), "--yamnet",
                 str(yamnet_tflite)]) == 0
    manifest = json.loads((hub_dir / "manifest.json").read_text())
    assert manifest["embedder_model"] == "yamnet" and manifest["variants"]["tflite"]["error_vs_source"][
        "max_abs_embedding_error"] == 0
    assert main(["export", "--model", str(yamnet_detector), "--hub", str(tmp_path / "q"), "--yamnet",
                 str(yamnet_tflite), "--quantize", "float16"]) == 2

    recording = household(shared_data)
    samples = recording.samples[: recording.rate * 25]
    hub = load_hub(hub_dir)
    assert hub.exact and hub.embedder.embedder_id == yamnet.embedder_id
    expected = Detector.load(yamnet_detector).probabilities(
        embed_waveform(samples, recording.rate, yamnet).embedding, yamnet.embedder_id)

    env, report = hub_environment(tmp_path / "hub-site")
    listener = ListenProcess(["--hub", str(hub_dir), "--source", "-", "--rate", str(recording.rate), "--format",
                              "s16le", "--probabilities"], env, tmp_path / "stderr.txt")
    listener.feed(pcm16(samples))
    listener.close_stdin()
    assert listener.finish() == 0, listener.stderr_text()
    imported = set(json.loads(report.read_text()))
    assert not imported & set(HEAVY_MODULES), imported & set(HEAVY_MODULES)
    streamed = np.array([[r["probabilities"][c] for c in ("crying", "laughter")]
                         for r in listener.records if r["type"] == "hop"])
    assert streamed.shape == expected.shape
    # 16-bit PCM on stdin vs float samples, numpy vs torch: tiny differences only.
    assert np.abs(streamed - expected).max() < 0.02
