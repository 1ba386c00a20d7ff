"""Training on planted patterns: weak, strong and mixed labels, GRU and LSTM; the model file round trip."""

import dataclasses

import numpy as np
import pytest
import torch

from classify.config import ModelConfig, TrainConfig
from classify.data import collate, encode, split_by_group
from classify.detector import Detector
from classify.metrics import average_precision
from homesound_testkit.synthetic import SYNTHETIC_EMBEDDER, planted_sequences
from classify.training import (
    Predictions,
    calibrate,
    detection_loss,
    positive_weights,
    train_detector,
)
from homesound.errors import HomesoundError, ProvenanceMismatchError

SMALL_MODEL = ModelConfig(projection_size=32, hidden_size=32)
QUICK = TrainConfig(epochs=12, patience=12, batch_size=64, learning_rate=5e-3)


def held_out_ap(detector: Detector, seed: int = 99) -> dict[str, dict[str, float]]:
    """AP on fresh sequences (other groups, other seed) per second, and per clip (its loudest second)."""
    test = planted_sequences(150, labels="both", seed=seed, split="test", key_prefix="heldout")
    probabilities = detector.probabilities_many([s.embedding for s in test], SYNTHETIC_EMBEDDER)
    result = {}
    for name in detector.classes:
        column, output = test[0].classes.index(name), detector.classes.index(name)
        result[name] = {
            "frame": average_precision(
                np.concatenate([p[:, output] for p in probabilities]),
                np.concatenate([s.frame_labels[:, column] for s in test]),
            ),
            "clip": average_precision(
                np.array([p[:, output].max() for p in probabilities]), np.array([s.clip_labels[column] for s in test])
            ),
        }
    return result


def worst(results: dict, level: str) -> float:
    return min(entry[level] for entry in results.values())


def mixed(count: int, seed: int):
    weak = planted_sequences(count // 2, labels="weak", seed=seed, key_prefix="audioset")
    strong = planted_sequences(count // 2, labels="strong", seed=seed + 1, key_prefix="recording")
    return weak + strong


@pytest.fixture(scope="module")
def weak_detector() -> Detector:
    return train_detector(planted_sequences(500, labels="weak", seed=1), SMALL_MODEL, QUICK, progress=False)


def test_weak_clip_labels_teach_per_second_detection(weak_detector):
    assert weak_detector.classes == ("crying", "laughter")  # from the data, sorted
    results = held_out_ap(weak_detector)
    assert worst(results, "clip") > 0.9
    # Clip labels cannot say when inside the clip: a causal model may stay high after an event.
    # Localization is still far above chance (per-second prevalence is about 0.1).
    assert worst(results, "frame") > 0.5
    assert weak_detector.metrics["validation_mean_average_precision"] > 0.9
    assert weak_detector.metrics["best_epoch"] >= 1


def test_shuffled_labels_teach_nothing():
    sequences = planted_sequences(500, labels="weak", seed=1)
    rng = np.random.default_rng(5)
    permutation = rng.permutation(len(sequences))
    shuffled = [dataclasses.replace(s, clip_labels=sequences[j].clip_labels) for s, j in zip(sequences, permutation)]
    detector = train_detector(shuffled, SMALL_MODEL, QUICK, progress=False)
    # Per-second prevalence is about 0.1: a model that learned nothing ranks at about that.
    results = held_out_ap(detector)
    assert max(entry["frame"] for entry in results.values()) < 0.3
    # Clip prevalence is about 0.3; an untrained network already reacts to the planted directions
    # (with a random sign), so ranking clips by their loudest second is somewhat above chance.
    assert max(entry["clip"] for entry in results.values()) < 0.8


@pytest.mark.parametrize(
    "labels, rnn, pooling",
    [("strong", "gru", "linear_softmax"), ("mixed", "gru", "attention"), ("mixed", "lstm", "linear_softmax"),
     ("weak", "lstm", "attention")],
)
def test_label_kinds_and_architectures_all_learn(labels, rnn, pooling):
    sequences = mixed(400, seed=3) if labels == "mixed" else planted_sequences(400, labels=labels, seed=3)
    config = dataclasses.replace(SMALL_MODEL, rnn=rnn, pooling=pooling)
    detector = train_detector(sequences, config, QUICK, progress=False)
    assert detector.config.rnn == rnn
    results = held_out_ap(detector)
    assert worst(results, "clip") > 0.9
    assert worst(results, "frame") > (0.5 if labels == "weak" else 0.9)
    summary = detector.data_summary
    assert summary["sequences"] == 400
    if labels == "mixed":
        assert summary["per_source_kind"] == {"audioset": 200, "recording": 200}
        assert summary["per_class"]["crying"]["strong_labeled_frames"] == 2000


def test_one_loss_for_a_batch_mixing_weak_and_strong_rows_ignores_unknown_labels():
    sequences = mixed(8, seed=4)
    data = encode(sequences, ("crying", "laughter"))
    batch = collate(data, np.arange(len(data)))
    config = TrainConfig()
    weights = positive_weights(data, np.arange(len(data)), config.max_pos_weight)
    logits = torch.zeros(batch.frame_targets.shape, requires_grad=True)
    clips = torch.full(batch.clip_targets.shape, 0.5, requires_grad=True)
    loss = detection_loss(logits, clips, batch, weights, config)
    loss.backward()
    weak_rows = [i for i, s in enumerate(sequences) if s.frame_labels is None]
    strong_rows = [i for i, s in enumerate(sequences) if s.frame_labels is not None]
    # Unknown labels get no gradient: weak rows have none on seconds, strong rows none on the clip.
    assert torch.all(logits.grad[weak_rows] == 0) and torch.any(logits.grad[strong_rows] != 0)
    assert torch.all(clips.grad[strong_rows] == 0) and torch.any(clips.grad[weak_rows] != 0)
    assert torch.isfinite(loss) and loss > 0


def test_classes_come_from_the_data_and_missing_ones_are_unknown_not_negative():
    only_crying = planted_sequences(4, classes=("crying",), labels="strong", seed=6)
    both = planted_sequences(4, classes=("laughter", "crying"), labels="weak", seed=7)
    data = encode(only_crying + both, ("crying", "laughter"))
    assert np.isnan(data.frame_targets[0][:, 1]).all()  # never labeled for laughter
    assert np.array_equal(data.frame_targets[0][:, 0], only_crying[0].frame_labels[:, 0])
    assert np.array_equal(data.clip_targets[4], both[0].clip_labels[[1, 0]])  # columns reordered
    assert np.isnan(data.clip_targets[:4]).all()


def test_validation_never_shares_a_source_recording_with_training():
    sequences = planted_sequences(300, labels="weak", seed=8, sequences_per_group=5)
    data = encode(sequences, ("crying", "laughter"))
    train, validation = split_by_group(data, 0.2, seed=0)
    assert set(np.asarray(data.groups)[train]).isdisjoint(np.asarray(data.groups)[validation])
    assert 0.1 < len(validation) / len(data) < 0.3
    assert len(train) + len(validation) == len(data)
    # Few groups, all holding the same classes: too few to stratify, still split by group.
    few = encode(planted_sequences(5, labels="strong", sequences_per_group=1, event_probability=1.0), ("crying",))
    train, validation = split_by_group(few, 0.2, seed=0)
    assert len(validation) == 1 and len(train) == 4
    with pytest.raises(HomesoundError, match="one source recording"):
        split_by_group(encode(planted_sequences(6, sequences_per_group=6), ("crying",)), 0.2, 0)


def test_training_is_reproducible_with_a_seed():
    sequences = planted_sequences(120, labels="both", seed=9)
    config = dataclasses.replace(QUICK, epochs=2)
    first = train_detector(sequences, SMALL_MODEL, config, progress=False).model.state_dict()
    second = train_detector(sequences, SMALL_MODEL, config, progress=False).model.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_thresholds_are_calibrated_for_best_f1_or_a_target_precision():
    data = encode(planted_sequences(4, labels="strong", seed=10, classes=("crying",)), ("crying",))
    indices = np.arange(4)
    truth = np.concatenate([f[:, 0] for f in data.frame_targets])
    rng = np.random.default_rng(0)
    noisy = np.clip(truth * 0.5 + rng.random(len(truth)) * 0.6, 0, 1)
    predictions = Predictions(frames=list(noisy.reshape(4, 10, 1)), clips=np.zeros((4, 1)))
    best_f1 = calibrate(data, indices, predictions, None)["crying"]
    strict = calibrate(data, indices, predictions, 1.0)["crying"]
    assert best_f1["rule"] == "max_f1" and best_f1["level"] == "frame"
    assert strict["rule"] == "target_precision" and strict["validation_precision"] == 1.0
    assert strict["threshold"] >= best_f1["threshold"]
    assert np.all(truth[noisy >= strict["threshold"]] == 1)


def test_model_file_round_trip(weak_detector, tmp_path):
    path = tmp_path / "models" / "detector.pt"
    digest = weak_detector.save(path)
    assert len(digest) == 64 and not list(tmp_path.glob("models/*.part*"))
    loaded = Detector.load(path, embedder_id=SYNTHETIC_EMBEDDER)
    probe = planted_sequences(3, seed=11)
    for sequence in probe:
        assert np.allclose(
            loaded.probabilities(sequence.embedding, SYNTHETIC_EMBEDDER),
            weak_detector.probabilities(sequence.embedding, SYNTHETIC_EMBEDDER),
            atol=1e-6,
        )
    assert loaded.classes == weak_detector.classes
    assert loaded.thresholds == weak_detector.thresholds
    assert loaded.config == weak_detector.config and loaded.train_config == weak_detector.train_config
    assert loaded.input_encoding == "audioset_uint8"
    assert loaded.data_summary["per_class"] == weak_detector.data_summary["per_class"]
    assert loaded.metrics["best_epoch"] == weak_detector.metrics["best_epoch"]
    stored = torch.load(path, weights_only=True)
    assert stored["embedder_ids"] == [SYNTHETIC_EMBEDDER] and stored["offline_only"] is False


def test_embeddings_of_another_provenance_are_refused(weak_detector, tmp_path):
    path = tmp_path / "detector.pt"
    weak_detector.save(path)
    with pytest.raises(ProvenanceMismatchError, match="vggish-other"):
        Detector.load(path, embedder_id="vggish-other")
    embedding = planted_sequences(1, seed=12)[0].embedding
    with pytest.raises(ProvenanceMismatchError):
        weak_detector.probabilities(embedding, "vggish-other")
    with pytest.raises(HomesoundError, match="expects audioset_uint8"):
        weak_detector.probabilities(embedding.astype(np.float32), SYNTHETIC_EMBEDDER)
    (tmp_path / "garbage.pt").write_bytes(b"not a model")
    with pytest.raises(HomesoundError, match="not a homesound model file"):
        Detector.load(tmp_path / "garbage.pt")


def test_training_refuses_to_mix_embedders_unless_told():
    a = planted_sequences(40, seed=13, embedder_id="vggish-a")
    b = planted_sequences(40, seed=14, embedder_id="vggish-b", key_prefix="other")
    with pytest.raises(ProvenanceMismatchError, match="--mix-embedders"):
        train_detector(a + b, SMALL_MODEL, QUICK, progress=False)
    detector = train_detector(a + b, SMALL_MODEL, dataclasses.replace(QUICK, epochs=1), progress=False,
                              allow_mixed_embedders=True)
    assert set(detector.embedder_ids) == {"vggish-a", "vggish-b"}


def test_raw_float32_embeddings_train_and_are_remembered():
    sequences = planted_sequences(200, labels="weak", seed=15, dtype=np.float32)
    detector = train_detector(sequences, SMALL_MODEL, dataclasses.replace(QUICK, epochs=3), progress=False)
    assert detector.input_encoding == "raw_float32"
    with pytest.raises(HomesoundError, match="expects raw_float32"):
        detector.probabilities(planted_sequences(1)[0].embedding, SYNTHETIC_EMBEDDER)


def test_streaming_detector_gives_the_offline_probabilities(weak_detector):
    embedding = np.concatenate([s.embedding for s in planted_sequences(6, seed=16)])
    offline = weak_detector.probabilities(embedding, SYNTHETIC_EMBEDDER)
    stream = weak_detector.stream()
    online = np.stack([stream.push(row, SYNTHETIC_EMBEDDER) for row in embedding])
    assert np.allclose(online, offline, atol=1e-6)


def test_evaluation_of_weak_only_data_reports_clip_scores_and_says_events_are_unavailable(weak_detector):
    from classify.evaluation import evaluate_detector, summary_table

    sequences = planted_sequences(60, labels="weak", seed=17, split="eval", key_prefix="audioset")
    report = evaluate_detector(weak_detector, sequences).report
    for label in ("crying", "laughter"):
        entry = report["classes"][label]
        assert "frame" not in entry and entry["clip"]["average_precision"] > 0.9
        assert entry["event_metrics"].startswith("not available")
    table = summary_table(report)
    assert "clip" in table and "second" not in table.splitlines()[1]
    with pytest.raises(ProvenanceMismatchError):
        evaluate_detector(weak_detector, planted_sequences(3, embedder_id="other"))


def test_recordings_shorter_than_one_second_give_no_probabilities_and_no_events(weak_detector):
    from classify.config import EventSettings
    from classify.detection import detect_events

    nothing = np.zeros((0, 128), dtype=np.uint8)
    ((probabilities, events),) = detect_events(weak_detector, [nothing], SYNTHETIC_EMBEDDER, EventSettings())
    assert probabilities.shape == (0, 2) and events == []
    assert weak_detector.stream().push(nothing, SYNTHETIC_EMBEDDER).shape == (0, 2)


def test_positive_weights_balance_rare_classes():
    data = encode(planted_sequences(200, labels="both", seed=18, event_probability=0.1), ("crying", "laughter"))
    weights = positive_weights(data, np.arange(len(data)), cap=50.0)
    frames = np.concatenate([f for f in data.frame_targets])
    expected = (frames < 0.5).sum(axis=0) / (frames > 0.5).sum(axis=0)
    assert np.allclose(weights.frame.numpy(), expected, rtol=1e-5)
    assert np.allclose(weights.clip.numpy(), (data.clip_targets < 0.5).sum(0) / (data.clip_targets > 0.5).sum(0))
    assert positive_weights(data, np.arange(len(data)), cap=2.0).frame.max() == 2.0
