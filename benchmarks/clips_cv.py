"""Source-grouped cross-validation of the detector on ../shared/data/clips (crying, laughter vs noise/silence).

Usage: python benchmarks/clips_cv.py [--vggish SOURCE --pca PCA.npz] [--folds 5] [--epochs 30] [--cache FILE.npz]

Every clip is embedded with the VGGish source given (default: deterministic RANDOM weights, the only
ones available offline). Clips are grouped by their source recording; each fold trains on the other
sources and is scored on its own, per second and per clip (its loudest second).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from homesound_testkit.clip_assembly import assemble, frame_labels
from classify.config import ModelConfig, TrainConfig
from classify.metrics import average_precision, nan_mean, roc_auc
from classify.training import train_detector
from homesound.sequences import LabeledSequence

CLASSES = ("crying", "laughter")
NARROWBAND_ORIGIN = "donateacry"  # phone recordings at 8 kHz: no energy above 4 kHz
RANDOM_WEIGHTS_NOTE = (
    "RANDOM VGGish weights (offline): these figures show that the pipeline learns what the embeddings "
    "carry, NOT how well real crying or laughter is recognised. Random-network embeddings keep coarse "
    "spectral shape, so 8 kHz phone recordings (Donate-a-cry) stand out by bandwidth alone; compare the "
    "'full-band crying' row. Run with --vggish/--pca of the real model for real figures."
)


def shared_data() -> Path:
    repository = Path(__file__).resolve().parents[1]
    for candidate in (repository.parent / "shared" / "data", Path("/work/shared/data")):
        if (candidate / "clips.csv").is_file():
            return candidate
    raise SystemExit("../shared/data is missing beside the checkout")


def embed_clips(data: Path, clips: pd.DataFrame, embedder) -> tuple[list[np.ndarray], str]:
    """Every clip's uint8 embeddings, from one pass over all clips laid end to end."""
    from embed.pipeline import embed_waveform

    audio, placed = assemble(zip(data / clips.path, clips.label))
    embedded = embed_waveform(audio, 16000, embedder)
    return [embedded.embedding[p.first_frame: p.first_frame + p.frames] for p in placed], embedded.embedder_id


def load_or_embed(args, data: Path, clips: pd.DataFrame) -> tuple[list[np.ndarray], str, bool]:
    if args.cache and Path(args.cache).is_file():
        cached = np.load(args.cache, allow_pickle=False)
        print(f"embeddings from cache {args.cache}")
        offsets = cached["offsets"]
        embeddings = [cached["embedding"][a:b] for a, b in itertools.pairwise(offsets)]
        return embeddings, str(cached["embedder_id"]), bool(cached["random_weights"])
    from embed.embedder import load_embedder

    random_weights = args.vggish is None
    with tempfile.TemporaryDirectory() as directory:
        if random_weights:
            from embed.random_weights import random_pca, write_checkpoint
            from embed.random_weights import random_weights as weights

            write_checkpoint(weights(0), Path(directory) / "vggish_model.ckpt")
            np.savez(Path(directory) / "vggish_pca_params.npz", **random_pca(0))
            args.vggish, args.pca = str(Path(directory) / "vggish_model.ckpt"), str(Path(directory) / "vggish_pca_params.npz")
        embedder = load_embedder(args.vggish, args.pca)
        started = time.perf_counter()
        embeddings, embedder_id = embed_clips(data, clips, embedder)
    seconds = sum(len(e) for e in embeddings) * 0.96
    print(f"embedded {len(clips)} clips ({seconds / 60:.1f} min of audio) in {time.perf_counter() - started:.0f} s "
          f"with {embedder_id}")
    if args.cache:
        offsets = np.cumsum([0] + [len(e) for e in embeddings])
        np.savez(args.cache, embedding=np.concatenate(embeddings), offsets=offsets, embedder_id=embedder_id,
                 random_weights=random_weights)
    return embeddings, embedder_id, random_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vggish", help="VGGish source (default: random weights written to a temporary folder)")
    parser.add_argument("--pca")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", help="keep the clip embeddings in this .npz to rerun quickly")
    args = parser.parse_args()
    from sklearn.model_selection import GroupKFold

    data = shared_data()
    clips = pd.read_csv(data / "clips.csv")
    embeddings, embedder_id, random_weights = load_or_embed(args, data, clips)
    sequences = [
        LabeledSequence(key=f"clip:{row.path}", group=row.source, split="train", embedding=embedding,
                        embedder_id=embedder_id, classes=CLASSES,
                        frame_labels=frame_labels([_whole(row.label, len(embedding))], CLASSES, len(embedding)))
        for row, embedding in zip(clips.itertuples(), embeddings) if len(embedding)
    ]
    kept = clips[[len(e) > 0 for e in embeddings]].reset_index(drop=True)
    narrowband = kept.origin.str.startswith(NARROWBAND_ORIGIN).to_numpy()
    folds = GroupKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    rows = []
    for fold, (train, test) in enumerate(folds.split(np.zeros(len(sequences)), groups=kept.source)):
        started = time.perf_counter()
        detector = train_detector([sequences[i] for i in train], ModelConfig(),
                                  TrainConfig(epochs=args.epochs, patience=8, seed=args.seed), progress=False)
        probabilities = detector.probabilities_many([sequences[i].embedding for i in test], embedder_id)
        labels = kept.label.to_numpy()[test]
        for column, name in enumerate(CLASSES):
            output = detector.classes.index(name)
            per_second = np.concatenate([p[:, output] for p in probabilities])
            truth = np.concatenate([np.full(len(p), labels[k] == name, dtype=float) for k, p in enumerate(probabilities)])
            loudest = np.array([p[:, output].max() for p in probabilities])
            clip_truth = (labels == name).astype(float)
            rows.append({"fold": fold, "class": name, "test clips": int(clip_truth.sum()),
                         "AP/second": average_precision(per_second, truth), "AUC/second": roc_auc(per_second, truth),
                         "AP/clip": average_precision(loudest, clip_truth), "AUC/clip": roc_auc(loudest, clip_truth),
                         "chance AP/clip": clip_truth.mean(),
                         "trained on": int(sum(kept.label.to_numpy()[train] == name))})
            if name == "crying":  # full-band crying only, against the same negatives
                keep = ~(narrowband[test] & (labels == "crying"))
                rows.append({"fold": fold, "class": "full-band crying", "test clips": int((clip_truth * keep).sum()),
                             "AP/clip": average_precision(loudest[keep], clip_truth[keep]),
                             "AUC/clip": roc_auc(loudest[keep], clip_truth[keep]),
                             "chance AP/clip": clip_truth[keep].mean(),
                             "trained on": int(sum((kept.label.to_numpy()[train] == name) & ~narrowband[train]))})
        print(f"fold {fold + 1}/{args.folds}: trained on {len(train)} clips, tested on {len(test)} "
              f"({time.perf_counter() - started:.0f} s)")
    table = pd.DataFrame(rows)
    # A fold measures a class only if it had positives to train on and to test on.
    measurable = table[(table["trained on"] > 0) & (table["test clips"] > 0)]
    summary = measurable.groupby("class", sort=False).agg(
        folds=("fold", "count"),
        **{f"{metric} mean": (metric, lambda v: nan_mean(v))
           for metric in ("AP/second", "AP/clip", "chance AP/clip", "AUC/clip")},
        **{f"{metric} std": (metric, "std") for metric in ("AP/clip",)},
    )
    pd.set_option("display.width", 160)
    print("\nper fold:\n" + table.round(3).to_string(index=False))
    print("\nmean over the folds that can measure the class (positives in training and in test):\n"
          + summary.reindex(list(table["class"].unique())).round(3).to_string())
    print(f"\nclips per label: {clips.label.value_counts().to_dict()}; sources per label: "
          f"{clips.groupby('label').source.nunique().to_dict()}")
    print("laughter (and silence) come from ONE source recording each: source-grouped CV cannot measure "
          "laughter — the fold that tests it has no laughter to train on, and the others none to test on.")
    if random_weights:
        print("\n" + RANDOM_WEIGHTS_NOTE)


def _whole(label: str, frames: int):
    from homesound_testkit.clip_assembly import PlacedClip

    return PlacedClip(path="", label=label, first_frame=0, frames=frames)


if __name__ == "__main__":
    main()
