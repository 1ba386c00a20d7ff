"""How good a detector is on held-out labeled sequences, with the field's standard metrics.

Score metrics (AP, ROC-AUC, P/R/F1 at the stored threshold) come from scikit-learn, per second
(strong labels) and per clip (weak labels, pooled like in training). Event metrics need strong
labels: segment-based F1 at 1 s and event-based F1 with DCASE collars (200 ms onset,
max(200 ms, 20 %) offset) from sed_eval on the events `homesound detect` would report, and
PSDS (DCASE 2021 scenario 1 criteria: DTC = GTC = 0.7, eFPR up to 100 per hour) from
sed_scores_eval on the raw per-second probabilities.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classify.config import EventSettings
from classify.data import EncodedSequences, encode
from classify.detector import INFERENCE_THREADS, Detector
from classify.events import EventRule, extract_events
from classify.frame_inputs import reads_class_scores
from classify.model import torch_threads
from classify.training import (
    Predictions,
    class_metrics,
    mean_average_precision,
    predict,
    scored_pairs,
)
from homesound.errors import HomesoundError
from homesound.sequences import LabeledSequence, mask_runs

ONSET_COLLAR_SECONDS = 0.2
OFFSET_COLLAR_FRACTION = 0.2
PSDS_CRITERIA = {"dtc_threshold": 0.7, "gtc_threshold": 0.7, "alpha_ct": 0.0, "alpha_st": 0.0, "max_efpr": 100.0}
SEGMENT_SECONDS = 1.0
EVALUATION_BATCH = 256


@dataclass(frozen=True)
class Stretch:
    """Consecutive seconds labeled for one class in one sequence: one 'audio file' for event metrics."""

    audio_id: str
    probabilities: np.ndarray  # [n]
    targets: np.ndarray  # [n] in {0, 1}
    hop_seconds: float

    @property
    def duration(self) -> float:
        return len(self.targets) * self.hop_seconds

    def reference_events(self) -> list[tuple[float, float]]:
        return [(begin * self.hop_seconds, end * self.hop_seconds) for begin, end in mask_runs(self.targets > 0.5)]


@dataclass(frozen=True)
class Evaluation:
    report: dict[str, Any]
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]  # class -> level -> (scores, targets)


def evaluate_detector(
    detector: Detector, sequences: Sequence[LabeledSequence], settings: EventSettings | None = None
) -> Evaluation:
    settings = settings or EventSettings()
    if not sequences:
        raise HomesoundError("no labeled sequences to evaluate on; choose another --split or label some audio")
    for embedder_id in sorted({s.embedder_id for s in sequences}):
        detector.check_embedder(embedder_id)
    data = encode(sequences, detector.classes)
    indices = np.arange(len(data))
    if reads_class_scores(detector):
        predictions = class_score_predictions(detector, sequences)
    else:
        if data.input_encoding != detector.input_encoding:
            raise HomesoundError(
                f"the detector expects {detector.input_encoding} embeddings but these are {data.input_encoding}"
            )
        with torch_threads(INFERENCE_THREADS):
            predictions, _ = predict(detector.model, data, indices, EVALUATION_BATCH)
    scores = class_metrics(data, indices, predictions, detector.thresholds)
    rules = settings.rules(detector.thresholds)
    report_classes: dict[str, Any] = {}
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for column, label in enumerate(detector.classes):
        stretches = labeled_stretches(data, predictions, column)
        report_classes[label] = {**scores[label], **event_metrics(label, stretches, rules[label])}
        curves[label] = {
            level: scored_pairs(data, indices, predictions, column, level)
            for level in ("frame", "clip") if level in scores[label]
        }
    report = {
        "sequences": len(data),
        "groups": len(set(data.groups)),
        "splits": sorted(set(data.splits)),
        "seconds": int(data.lengths.sum()),
        "thresholds": detector.thresholds,
        "event_rules": {label: vars(rule) for label, rule in rules.items()},
        "mean_average_precision": mean_average_precision(scores),
        "classes": report_classes,
        "definitions": {
            "frame": "per second (strongly labeled seconds)",
            "clip": "per sequence (weak labels), per-second outputs pooled as in training",
            "segment_based": f"sed_eval segment-based metrics, {SEGMENT_SECONDS:g} s segments",
            "event_based": f"sed_eval event-based metrics, onset collar {ONSET_COLLAR_SECONDS} s, "
                           f"offset collar max({ONSET_COLLAR_SECONDS} s, {OFFSET_COLLAR_FRACTION:.0%} of length)",
            "psds": "sed_scores_eval intersection-based PSDS, DTC=GTC=0.7, max eFPR 100/h, single class",
            "false_alarms_per_hour": "detected events that overlap no labeled event, per hour of strongly "
                                     "labeled audio",
        },
    }
    return Evaluation(report=report, curves=curves)


def class_score_predictions(detector, sequences: Sequence[LabeledSequence]) -> Predictions:
    """A zero-shot detector's frame probabilities, and per clip their maximum (a clip holds the class
    if any of its frames does)."""
    frames = []
    for sequence in sequences:
        if sequence.class_scores is None:
            raise HomesoundError(f"{sequence.key} has no class scores ({sequence.embedder_id}); the zero-shot "
                                 "detector needs recordings embedded by YAMNet")
        frames.append(detector.probabilities(sequence.class_scores, sequence.embedder_id))
    clips = np.stack([f.max(axis=0) if len(f) else np.zeros(len(detector.classes), np.float32) for f in frames])
    return Predictions(frames=frames, clips=clips)


def labeled_stretches(data: EncodedSequences, predictions: Predictions, column: int) -> list[Stretch]:
    stretches = []
    for position, (key, frames) in enumerate(zip(data.keys, data.frame_targets)):
        if frames is None:
            continue
        for part, (begin, end) in enumerate(mask_runs(~np.isnan(frames[:, column]))):
            stretches.append(Stretch(
                audio_id=f"{key}#{part}",
                probabilities=predictions.frames[position][begin:end, column],
                targets=frames[begin:end, column],
                hop_seconds=data.hop_seconds[position],
            ))
    return stretches


def event_metrics(label: str, stretches: Sequence[Stretch], rule: EventRule) -> dict[str, Any]:
    """Segment/event F1 (sed_eval), PSDS (sed_scores_eval) and false alarms per hour for one class."""
    if not stretches:
        return {"event_metrics": "not available: no strongly labeled seconds for this class"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dcase_util warns about pkg_resources on import
        import sed_eval

    segment_based = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=[label], time_resolution=SEGMENT_SECONDS)
    event_based = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=[label], t_collar=ONSET_COLLAR_SECONDS, percentage_of_length=OFFSET_COLLAR_FRACTION,
        evaluate_onset=True, evaluate_offset=True,
    )
    false_alarms, reference_count, detected_count = 0, 0, 0
    for stretch in stretches:
        reference = stretch.reference_events()
        detected = extract_events(stretch.probabilities[:, None], [label], rule, stretch.hop_seconds)
        reference_list = [_sed_event(stretch.audio_id, label, on, off) for on, off in reference]
        detected_list = [_sed_event(stretch.audio_id, label, e.start, e.end) for e in detected]
        segment_based.evaluate(reference_list, detected_list, evaluated_length_seconds=stretch.duration)
        event_based.evaluate(reference_list, detected_list)
        false_alarms += sum(not any(e.start < off and on < e.end for on, off in reference) for e in detected)
        reference_count += len(reference)
        detected_count += len(detected)
    hours = sum(stretch.duration for stretch in stretches) / 3600.0
    return {
        "labeled_hours": hours,
        "reference_events": reference_count,
        "detected_events": detected_count,
        "segment_based": _sed_eval_summary(segment_based, label),
        "event_based": _sed_eval_summary(event_based, label),
        "psds": psds(label, stretches),
        "false_alarms_per_hour": false_alarms / hours if hours > 0 else math.nan,
    }


def psds(label: str, stretches: Sequence[Stretch]) -> float:
    """Single-class PSDS; NaN when there is no labeled event to detect (PSDS is undefined then)."""
    import pandas as pd
    from sed_scores_eval import intersection_based

    ground_truth = {s.audio_id: [(on, off, label) for on, off in s.reference_events()] for s in stretches}
    if not any(ground_truth.values()):
        return math.nan
    scores = {}
    for stretch in stretches:
        times = np.arange(len(stretch.targets) + 1) * stretch.hop_seconds
        frame = pd.DataFrame({"onset": times[:-1], "offset": times[1:]})
        # float32 scores on purpose: sed_scores_eval 0.0.4 hands DataFrame views to Cython, which
        # refuses pandas >= 3's read-only views; a float32 column is converted (copied) first.
        # Fixed upstream (fgnt/sed_scores_eval PR #17) but not yet released.
        frame[label] = stretch.probabilities.astype(np.float32)
        scores[stretch.audio_id] = frame
    durations = {s.audio_id: s.duration for s in stretches}
    _value, per_class, _, _ = intersection_based.psds(scores, ground_truth, durations, **PSDS_CRITERIA)
    return float(per_class[label])


def _sed_event(audio_id: str, label: str, onset: float, offset: float) -> dict:
    return {"filename": audio_id, "event_label": label, "onset": float(onset), "offset": float(offset)}


def _sed_eval_summary(metrics, label: str) -> dict:
    result = metrics.results_class_wise_metrics()[label]
    return {
        "f1": _float(result["f_measure"]["f_measure"]),
        "precision": _float(result["f_measure"]["precision"]),
        "recall": _float(result["f_measure"]["recall"]),
        "error_rate": _float(result["error_rate"]["error_rate"]),
        "reference": int(result["count"]["Nref"]),
        "detected": int(result["count"]["Nsys"]),
    }


def _float(value) -> float:
    return math.nan if value is None else float(value)


def write_report(evaluation: Evaluation, directory: str | Path, extra: dict | None = None) -> list[Path]:
    """report.json plus one PR-curve PNG per class; returns the files written."""
    from classify.plots import precision_recall_curves

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    report = {**(extra or {}), **evaluation.report}
    written = [directory / "report.json"]
    written[0].write_text(json.dumps(_strict(report), indent=2, sort_keys=True, default=_json_default) + "\n")
    for label, curves in evaluation.curves.items():
        threshold = evaluation.report["thresholds"][label]
        written.append(precision_recall_curves(label, curves, threshold, directory / f"pr_{_safe(label)}.png"))
    return written


def summary_table(report: dict) -> str:
    columns = ["class", "level", "labels", "pos", "AP", "AUC", "P", "R", "F1", "segF1", "evtF1", "PSDS", "FA/h"]
    rows = []
    for label, entry in report["classes"].items():
        for level in ("frame", "clip"):
            if level not in entry:
                continue
            metrics = entry[level]
            has_events = level == "frame" and "segment_based" in entry
            rows.append([
                label, "second" if level == "frame" else "clip", str(metrics["labels"]), str(metrics["positives"]),
                _fmt(metrics["average_precision"]), _fmt(metrics["roc_auc"]), _fmt(metrics["precision"]),
                _fmt(metrics["recall"]), _fmt(metrics["f1"]),
                _fmt(entry["segment_based"]["f1"]) if has_events else "-",
                _fmt(entry["event_based"]["f1"]) if has_events else "-",
                _fmt(entry["psds"]) if has_events else "-",
                _fmt(entry["false_alarms_per_hour"], 1) if has_events else "-",
            ])
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    lines.append(f"mean AP: {_fmt(report['mean_average_precision'])} over {report['sequences']} sequences "
                 f"from {report['groups']} recordings ({report['seconds']} s)")
    return "\n".join(lines)


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)


def _strict(value):
    """NaN (an undefined metric) becomes null, so report.json is valid JSON for every reader."""
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return None
    return value


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
