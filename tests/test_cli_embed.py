"""`homesound embed` on real clips of every shared format, through the installed console command's code."""

import json

import numpy as np
import pandas as pd

from homesound.cli import main


def test_embed_real_clips_of_every_format(tmp_path, vggish_files, shared_data, capsys):
    clips = pd.read_csv(shared_data / "clips.csv")
    one_per_format = clips.groupby("format").head(1)
    assert len(one_per_format) >= 4  # Ogg, FLAC, float WAV, 16-bit 8 kHz WAV
    paths = [str(shared_data / path) for path in one_per_format["path"]]
    code = main(["embed", *paths, "--vggish", str(vggish_files.checkpoint), "--out-dir", str(tmp_path)])
    assert code == 0
    for (_, row), path in zip(one_per_format.iterrows(), paths):
        with np.load(tmp_path / (path.rsplit("/", 1)[1].rsplit(".", 1)[0] + ".npz")) as result:
            expected = int((row["seconds"] * 16000 - 240) // 15360)
            assert abs(len(result["embedding"]) - expected) <= 1
            assert result["embedding"].dtype == np.uint8 and result["embedding"].shape[1] == 128
            assert result["raw_embedding"].dtype == np.float32
            assert result["start_seconds"].dtype == np.float64
            assert np.allclose(np.diff(result["start_seconds"]), 0.96)
            provenance = json.loads(str(result["provenance"]))
            assert provenance["source_kind"] == "checkpoint" and len(provenance["pca_sha256"]) == 64
            # A real recording is not silence: its embeddings vary over time.
            assert result["raw_embedding"].std(axis=0).mean() > 1e-3


def test_embed_one_file_out_and_a_bad_file(tmp_path, vggish_files, shared_data, capsys):
    laughter = pd.read_csv(shared_data / "clips.csv").query("label == 'laughter'")
    good = shared_data / laughter.sort_values(["seconds", "path"]).iloc[0]["path"]  # the shortest laughter clip
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    out = tmp_path / "one.npz"
    assert main(["embed", str(good), "--vggish", str(vggish_files.checkpoint), "--out", str(out)]) == 0
    assert out.is_file() and not list(tmp_path.glob("*.part*"))
    code = main(["embed", str(bad), str(good), "--vggish", str(vggish_files.checkpoint), "--out-dir", str(tmp_path / "d")])
    captured = capsys.readouterr()
    assert code == 1 and "broken.wav" in captured.err and "Traceback" not in captured.err
    assert (tmp_path / "d" / (good.stem + ".npz")).is_file()  # the good one still got done


def test_user_mistakes_are_messages_not_tracebacks(tmp_path, capsys, vggish_files):
    code = main(["embed", "a.wav", "b.wav", "--vggish", str(vggish_files.checkpoint), "--out", str(tmp_path / "x.npz")])
    assert code == 2 and "--out-dir" in capsys.readouterr().err
    code = main(["embed", "a.wav", "--vggish", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "x.npz")])
    assert code == 2 and "not found" in capsys.readouterr().err


def test_embed_files_returns_each_file_as_data_and_goes_on_past_a_bad_one(tmp_path, vggish_files, shared_data):
    import soundfile

    from embed.embedder import EmbedderConfig
    from embed.jobs import EmbeddedFile, EmbedFilesConfig, FileFailure, embed_files

    clips = pd.read_csv(shared_data / "clips.csv")
    good = shared_data / clips[clips["label"] == "laughter"]["path"].iloc[0]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(8000, dtype=np.float32), 16000)  # 0.5 s: shorter than one window
    heard = []
    config = EmbedFilesConfig(inputs=(str(bad), str(good), str(short), str(good)), out_dir=str(tmp_path / "d"),
                              embedder=EmbedderConfig(str(vggish_files.checkpoint), jit_compile=False))
    result = embed_files(config, on_file=heard.append)
    assert [type(done) for done in heard] == [FileFailure, EmbeddedFile, EmbeddedFile, EmbeddedFile]
    assert heard == [*result.failures, *result.written] and result.exit_status == 1
    assert "broken.wav" in result.failures[0].reason
    names = [f"{good.stem}.npz", "short.npz", f"{good.stem}-2.npz"]  # the same stem twice: nothing overwritten
    assert [done.target for done in result.written] == [str(tmp_path / "d" / name) for name in names]
    assert result.written[0].embeddings > 0 and result.written[1].embeddings == 0
    assert result.written[1].seconds == 0.5 < result.written[1].window_seconds
    with np.load(result.written[0].target) as stored:
        assert str(stored["embedder_id"]) == result.embedder_id and len(stored["embedding"]) == result.written[0].embeddings
