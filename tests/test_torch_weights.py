"""Converted once, then no TensorFlow: where the torch weights file goes, when it is trusted, when it is made again."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embed.random_weights import random_weights, write_checkpoint
from embed.torch_weights import SUFFIX, cache_path, find_converted
from embed.embedder import EmbedderConfig, load_embedder
from homesound.cli import main

REPO = Path(__file__).resolve().parents[1]
BLOCK_TENSORFLOW = textwrap.dedent("""
    import sys

    class NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorflow_hub", "tf_keras", "keras"):
                raise ImportError(f"{name} is blocked: this run must not need TensorFlow")

    sys.meta_path.insert(0, NoTensorFlow())
""")


def run_without_tensorflow(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    script = BLOCK_TENSORFLOW + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.fixture()
def own_checkpoint(tmp_path, vggish_files):
    """A private copy of the random checkpoint (tests here write beside it)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    for file in vggish_files.checkpoint.parent.glob("vggish_model.ckpt.*"):
        if not file.name.endswith(SUFFIX):
            shutil.copy2(file, folder / file.name)
    shutil.copy2(vggish_files.pca, folder / "vggish_pca_params.npz")
    return folder / "vggish_model.ckpt"


@pytest.mark.slow
def test_homesound_embed_runs_without_tensorflow_once_converted(tmp_path, own_checkpoint, shared_data):
    clips = pd.read_csv(shared_data / "clips.csv")
    short = clips[clips["seconds"] < 10]
    clip = shared_data / short[short["format"].str.startswith("FLAC")].iloc[0]["path"]
    archive = tmp_path / "archive"
    archive.mkdir()
    for path in short[short["format"].str.startswith("WAV")].groupby("format").head(1)["path"]:
        shutil.copy2(shared_data / path, archive)
    tf_out, torch_out = tmp_path / "tf.npz", tmp_path / "torch.npz"
    assert main(["embed", str(clip), "--vggish", str(own_checkpoint), "--backend", "tf", "--out", str(tf_out)]) == 0
    assert not Path(f"{own_checkpoint}{SUFFIX}").exists()  # the TF backend converts nothing
    converted = load_embedder(config=EmbedderConfig(str(own_checkpoint), backend="torch"))  # converts, with TF
    assert Path(f"{own_checkpoint}{SUFFIX}").is_file()

    result = run_without_tensorflow(f"""
        from homesound.cli import main
        code = main(["embed", {str(clip)!r}, "--vggish", {str(own_checkpoint)!r}, "--out", {str(torch_out)!r}])
        code += main(["embed", {str(archive)!r}, "--vggish", {str(own_checkpoint)!r},
                      "--workspace", {str(tmp_path / "home.db")!r}, "--no-progress"])
        assert "tensorflow" not in sys.modules
        sys.exit(code)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(tf_out) as expected, np.load(torch_out) as got:
        assert str(got["embedder_id"]) == str(expected["embedder_id"]) == converted.embedder_id
        assert json.loads(str(got["provenance"]))["backend"] == "torch"
        reference = expected["raw_embedding"]
        assert np.abs(got["raw_embedding"] - reference).max() <= 1e-4 * np.abs(reference).max()
        assert np.abs(got["embedding"].astype(int) - expected["embedding"]).max() <= 1
    assert "embedded        2" in result.stdout and converted.embedder_id in result.stdout


@pytest.mark.slow
def test_stale_or_touched_source(own_checkpoint):
    first = find_converted("checkpoint", str(own_checkpoint), str(own_checkpoint))
    assert first is None
    embedder = load_embedder(config=EmbedderConfig(str(own_checkpoint), backend="torch"))
    converted = Path(f"{own_checkpoint}{SUFFIX}")
    original_sha = embedder.provenance["weights_sha256"]

    data = next(own_checkpoint.parent.glob("vggish_model.ckpt.data-*"))
    os.utime(data, ns=(data.stat().st_atime_ns, data.stat().st_mtime_ns + 10**9))  # touched, same content
    found = find_converted("checkpoint", str(own_checkpoint), str(own_checkpoint))
    assert found is not None and found.source_sha256 == original_sha  # hashed again, not converted again
    assert found.source_stats[-1][2] == data.stat().st_mtime_ns  # and now trusted by its stats again

    write_checkpoint(random_weights(1), own_checkpoint)  # other weights at the same path
    assert find_converted("checkpoint", str(own_checkpoint), str(own_checkpoint)) is None
    other = load_embedder(config=EmbedderConfig(str(own_checkpoint), backend="torch"))
    assert other.provenance["weights_sha256"] != original_sha and other.embedder_id != embedder.embedder_id
    assert other.converted_path == str(converted)
    tf_other = load_embedder(config=EmbedderConfig(str(own_checkpoint), backend="tf", jit_compile=False))
    assert tf_other.embedder_id == other.embedder_id


def _make_unwritable(folder: Path) -> bool:
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return True
    # root ignores permission bits; the immutable attribute stops root too
    return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0


def test_read_only_source_folder_uses_the_cache(tmp_path, own_checkpoint, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    folder = own_checkpoint.parent
    if not _make_unwritable(folder):
        pytest.skip("cannot make a folder read-only here")
    try:
        embedder = load_embedder(config=EmbedderConfig(str(own_checkpoint), backend="torch"))
        cached = cache_path("checkpoint", str(own_checkpoint), str(own_checkpoint))
        assert embedder.converted_path == str(cached) and cached.is_file()
        assert not Path(f"{own_checkpoint}{SUFFIX}").exists()
        result = run_without_tensorflow(f"""
            from embed.embedder import EmbedderConfig, load_embedder
            embedder = load_embedder(config=EmbedderConfig({str(own_checkpoint)!r}, backend="torch"))
            print(embedder.embedder_id, embedder.converted_path)
        """, env={"TFHUB_CACHE_DIR": str(tmp_path / "cache")})
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.split() == [embedder.embedder_id, str(cached)]
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


def test_hub_handle_converts_once_then_needs_neither_tensorflow_nor_the_network(tmp_path, local_hub, vggish_files,
                                                                                 monkeypatch):
    cache = tmp_path / "hub-cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    handle = f"http://127.0.0.1:{local_hub.server_port}/google/vggish/1"
    embedder = load_embedder(config=EmbedderConfig(handle, str(vggish_files.pca), backend="torch"))
    requests = len(local_hub.requests)
    assert embedder.converted_path == str(cache_path("hub", handle, handle))
    result = run_without_tensorflow(f"""
        import numpy as np
        from embed.pipeline import embed_waveform
        from embed.embedder import EmbedderConfig, load_embedder
        embedder = load_embedder(config=EmbedderConfig({handle!r}, {str(vggish_files.pca)!r}, backend="torch"))
        print(embedder.embedder_id, len(embed_waveform(np.zeros(32000), 16000, embedder)))
    """, env={"TFHUB_CACHE_DIR": str(cache)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [embedder.embedder_id, "2"]
    assert len(local_hub.requests) == requests  # nothing fetched again
    tf_id = load_embedder(config=EmbedderConfig(handle, str(vggish_files.pca), backend="tf")).embedder_id
    assert embedder.embedder_id == tf_id and embedder.embedder_id.startswith("vggish-hub-")


def test_backend_mistakes_are_messages(tmp_path, vggish_files, capsys, monkeypatch):
    out = str(tmp_path / "x.npz")
    clip = str(tmp_path / "a.wav")
    import soundfile

    soundfile.write(clip, np.zeros(16000), 16000)
    args = ["embed", clip, "--vggish", str(vggish_files.checkpoint), "--out", out]
    assert main(args + ["--device", "cuda"]) == 2 and "no CUDA GPU" in capsys.readouterr().err
    assert main(args + ["--backend", "tf", "--precision", "bf16"]) == 2
    assert "--backend torch" in capsys.readouterr().err
    assert main(args + ["--precision", "tf32"]) == 2 and "CUDA only" in capsys.readouterr().err
    monkeypatch.setenv("HOMESOUND_VGGISH_BACKEND", "onnx")
    assert main(args) == 2 and "HOMESOUND_VGGISH_BACKEND" in capsys.readouterr().err
