"""A detector trained on AudioSet's released features, used on a household archive embedded with Google's
VGGish checkpoint and the official PCA: accepted only on the user's checked statement, recorded in the model
and the run; YAMNet and VGGish with another PCA are still refused.

The network weights are homesound's random ones (the real checkpoint is not available offline); the
official PCA file is stood in by one written in its exact format with its published signature (the
eigenvector outlier [127][65] = 44.999 and mean 65 = -0.251) - the only facts homesound checks about it.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from classify.compatibility import IncompatibleEmbedderError, accept_embedder, official_pca_evidence
from classify.detector import Detector
from homesound_testkit.synthetic import planted_sequences
from homesound.cli import main
from homesound.workspace import Workspace, audioset
from homesound.workspace.recordings import register_embedder
from homesound.workspace.runs import list_runs

TRAIN_FAST = ["--epochs", "3", "--patience", "3", "--quiet", "--hidden-size", "8", "--projection-size", "8"]


def official_like_pca(path, seed: int = 0):
    """vggish_pca_params.npz in Google's format, with the official file's published signature."""
    rng = np.random.default_rng(seed)
    vectors = np.clip(rng.normal(0.0, 0.5, (128, 128)), -4.9, 4.9)
    vectors[127, 65] = 44.999
    means = rng.normal(0.0, 0.1, 128)
    means[65] = -0.251
    np.savez(path, pca_eigen_vectors=vectors, pca_means=means)
    return path


@pytest.fixture(scope="module")
def household(tmp_path_factory, shared_data, vggish_files, yamnet_tflite):
    """A workspace holding AudioSet segments (audioset-release) and a few real clips embedded three ways:
    VGGish + the official-format PCA, VGGish + another PCA, and YAMNet."""
    directory = tmp_path_factory.mktemp("compatibility")
    clips = directory / "clips"
    clips.mkdir()
    for name in ("crying/1-187207-A.ogg", "noise/1-100032-A.ogg"):
        shutil.copy(shared_data / "clips" / name, clips / name.replace("/", "-"))
    official = official_like_pca(directory / "vggish_pca_params.npz")
    workspace = directory / "home.db"
    with Workspace(workspace) as ws:
        register_embedder(ws, audioset.EMBEDDER_ID, audioset.EMBEDDER_PROVENANCE)
        audioset.use_target_mapping(ws, "m1", "{}", ("laughter", "crying"), lambda mids: (0, 0))
        segments = planted_sequences(60, labels="weak", seed=3, classes=("laughter", "crying"))
        audioset.save_segments(ws, [
            audioset.AudioSetSegment(
                ytid=f"yt{i:04d}", start_ms=0, start_seconds=0.0, end_seconds=10.0, split="train",
                source_list="balanced_train_segments", selection_role="positive", label_mids=(),
                targets=tuple(int(v) for v in s.clip_labels), embedding=s.embedding,
            ) for i, s in enumerate(segments)
        ], "m1", None)
    for options in (["--vggish", str(vggish_files.checkpoint), "--pca", str(official)],
                    ["--vggish", str(vggish_files.checkpoint), "--pca", str(vggish_files.pca)],
                    ["--embedder", "yamnet", "--yamnet", str(yamnet_tflite)]):
        assert main(["embed", str(clips), "--workspace", str(workspace), "--workers", "1", *options]) == 0
    with Workspace(workspace) as ws:
        ids = {row["id"]: row for row in ws.query("SELECT id FROM embedders")}
    return workspace, official, vggish_files.pca, ids


@pytest.mark.slow
def test_an_audioset_model_reads_an_official_vggish_archive_only_when_told_and_checked(household, tmp_path, capsys):
    workspace, official, other_pca, _ = household
    plain = tmp_path / "plain.pt"
    train = ["train", "--workspace", str(workspace), "--embedder", "audioset-release", *TRAIN_FAST]
    assert main([*train, "--out", str(plain)]) == 0
    capsys.readouterr()
    # Without the statement the archive is refused, and the message says how to state it.
    assert main(["detect", "--workspace", str(workspace), "--model", str(plain), "--out", str(tmp_path / "e.csv")]) == 2
    assert "--accept-embedder audioset-release" in capsys.readouterr().err

    accepting = tmp_path / "accepting.pt"
    assert main([*train, "--out", str(accepting), "--accept-embedder", "audioset-release",
                 "--official-pca", str(official)]) == 0
    printed = capsys.readouterr().out
    detector = Detector.load(accepting)
    (archive,) = [e for e in detector.embedder_ids if e != "audioset-release"]
    assert f"also reads {archive} as audioset-release" in printed
    evidence = detector.embedder_provenance[archive]["acceptance"]
    assert evidence["statement"] == "audioset-release" and evidence["pca_sha256"] == official_pca_evidence(official)["sha256"]
    assert evidence["weights_sha256"] and "weights" in evidence["not_checked"]  # recorded, not verifiable
    with Workspace(workspace) as ws:
        run = list_runs(ws, "train")[-1]
    assert json.loads(run["config_json"])["accept_embedder"] == "audioset-release"
    assert archive in json.loads(run["summary_json"])["accepted_embedders"]
    # The archive is now read (the other VGGish and YAMNet are not among the model's embedders).
    assert main(["detect", "--workspace", str(workspace), "--model", str(accepting),
                 "--out", str(tmp_path / "events.csv")]) == 0
    assert "2 recordings" in capsys.readouterr().out


def test_other_embedders_and_other_pca_files_are_still_refused(household, tmp_path, capsys):
    workspace, official, other_pca, ids = household
    train = ["train", "--workspace", str(workspace), "--embedder", "audioset-release", "--out",
             str(tmp_path / "m.pt"), *TRAIN_FAST, "--accept-embedder", "audioset-release"]
    assert main([*train, "--official-pca", str(other_pca)]) == 2
    assert "is not Google's vggish_pca_params.npz" in capsys.readouterr().err
    assert main(train) == 2
    assert "needs --official-pca" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()

    evidence = official_pca_evidence(official)
    with Workspace(workspace) as ws:
        from homesound.workspace.recordings import embedder_provenance

        provenances = {e: embedder_provenance(ws, e) for e in ids if e != "audioset-release"}
    verdicts = {}
    for embedder_id, provenance in provenances.items():
        try:
            accept_embedder("audioset-release", embedder_id, provenance, evidence)
            verdicts[provenance["model"], provenance.get("pca_sha256") == evidence["sha256"]] = "accepted"
        except IncompatibleEmbedderError as error:
            verdicts[provenance["model"], provenance.get("pca_sha256") == evidence["sha256"]] = str(error)
    assert verdicts[("vggish", True)] == "accepted"
    assert "another PCA file" in verdicts[("vggish", False)]
    assert "not VGGish" in verdicts[("yamnet", False)]
