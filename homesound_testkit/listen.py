"""For the listen tests and benchmarks (never used by the product): a household recording of real clips
with known event times, a small detector, `homesound listen` as a process, and a real MQTT broker.

The detector is trained on embeddings of the shared clips computed with the RANDOM VGGish weights of
the test fixtures (real weights need the internet). Random convolutional features do not recognise
crying as such; what they keep is coarse spectral shape, and the Donate-a-cry crying clips (phone
recordings at 8 kHz, band-limited) differ in it from full-band room tone and household noise. So
crying here is Donate-a-cry crying, from sources held out of training: detection and its timing are
real and checkable, the recognition problem is easier than in a home. Laughter (one source recording
in the shared data, with quiet gaps between laughs) is trained on, but its events are not asserted.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classify.config import ModelConfig, TrainConfig
from embed.audio_io import read_mono
from embed.frontend import waveform_to_examples
from embed.params import VGGISH
from embed.resample import StreamingResampler
from homesound.frames import VGGISH_FRAMES, FrameSpec
from homesound.sequences import LabeledSequence
from homesound_testkit.ports import free_port

CLASSES = ("crying", "laughter")
RATE = 44100


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str
    source: str


def clips_by_split(shared_data: Path) -> dict[str, list[Clip]]:
    """'train' and 'test' clips; a source lies on one side only, except the single-source labels.

    Crying is Donate-a-cry's only (see the module's docstring).
    """
    with open(shared_data / "clips.csv", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["path"])
    split: dict[str, list[Clip]] = {"train": [], "test": []}
    counts: dict[str, int] = {}
    for row in rows:
        if row["label"] == "crying" and not row["origin"].startswith("donateacry"):
            continue
        clip = Clip(shared_data / row["path"], row["label"], row["source"])
        if row["label"] in ("laughter", "silence"):
            counts[row["label"]] = counts.get(row["label"], 0) + 1
            held_out = counts[row["label"]] % 5 == 0
        else:
            held_out = int(hashlib.sha1(row["source"].encode()).hexdigest(), 16) % 5 == 0
        split["test" if held_out else "train"].append(clip)
    return split


def load_clip(clip: Clip, rate: int = RATE) -> np.ndarray:
    samples, clip_rate = read_mono(clip.path)
    if clip_rate == rate:
        return samples
    resampler = StreamingResampler(clip_rate, rate)  # resampy's result, without numba's start-up
    return np.concatenate([resampler.push(samples), resampler.finish()])


@dataclass(frozen=True)
class Household:
    samples: np.ndarray  # float64 mono at `rate`
    rate: int
    truth: list[tuple[str, float, float]]  # (label, start, end) of each crying/laughter stretch


HOUSEHOLD_PLAN = ("silence", "silence", "crying", "crying", "silence", "silence", "laughter",
                  "noise", "silence", "crying", "silence", "silence")


def continuously_active(samples: np.ndarray, rate: int, floor_db: float = -20.0) -> bool:
    """No half second quieter than `floor_db` below the clip's level: its label holds from start to end.

    Clip labels are per clip; a crying clip that opens with two seconds of quiet would make
    its clip boundaries a false ground truth for event times.
    """
    window = rate // 2
    count = len(samples) // window
    levels = np.sqrt((samples[: count * window].reshape(count, window) ** 2).mean(axis=1))
    overall = np.sqrt(np.mean(samples ** 2))
    return bool(overall > 0 and np.all(levels >= overall * 10 ** (floor_db / 20)))


def household(shared_data: Path, rate: int = RATE) -> Household:
    """~65 s: room tone, crying, room tone, laughter, a household noise, crying again, room tone."""
    test = clips_by_split(shared_data)["test"]
    pools: dict[str, list[np.ndarray]] = {label: [] for label in HOUSEHOLD_PLAN}
    needed = {label: HOUSEHOLD_PLAN.count(label) for label in pools}
    for clip in test:
        if clip.label in pools and len(pools[clip.label]) < needed[clip.label]:
            samples = load_clip(clip, rate)
            if clip.label not in CLASSES or continuously_active(samples, rate):
                pools[clip.label].append(samples)
    pieces, truth, position = [], [], 0
    for label in HOUSEHOLD_PLAN:
        samples = pools[label].pop(0)
        if label in CLASSES:
            start, end = position / rate, (position + len(samples)) / rate
            if truth and truth[-1][0] == label and abs(truth[-1][2] - start) < 1e-9:
                truth[-1] = (label, truth[-1][1], end)
            else:
                truth.append((label, start, end))
        pieces.append(samples)
        position += len(samples)
    return Household(np.concatenate(pieces), rate, truth)


def training_clips(shared_data: Path, per_label: int = 30, seed: int = 0) -> list[Clip]:
    """A small, balanced choice of training clips: `per_label` of each label."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[Clip]] = {}
    for clip in clips_by_split(shared_data)["train"]:
        groups.setdefault(clip.label, []).append(clip)
    chosen = []
    for _, clips in sorted(groups.items()):
        chosen += [clips[i] for i in sorted(rng.choice(len(clips), min(per_label, len(clips)), replace=False))]
    return chosen


def embed_clips(clips: list[Clip], embedder) -> list[np.ndarray]:
    """AudioSet uint8 embeddings of each clip, all examples through the network in full batches."""
    examples = [waveform_to_examples(load_clip(clip, VGGISH.sample_rate)) for clip in clips]
    raw = embedder.run_network(np.concatenate(examples))
    return np.split(embedder.postprocess(raw), np.cumsum([len(e) for e in examples])[:-1])


def training_sequences(clips: list[Clip], embeddings: list[np.ndarray], embedder_id: str, count: int = 150,
                       clips_per_sequence: int = 6, seed: int = 0) -> list[LabeledSequence]:
    """Strongly labeled sequences of several clips' embeddings back to back (transitions included)."""
    embedded = [(clip, embedding) for clip, embedding in zip(clips, embeddings) if len(embedding)]
    rng = np.random.default_rng(seed)
    sequences = []
    for index in range(count):
        chosen = [embedded[i] for i in rng.choice(len(embedded), clips_per_sequence, replace=False)]
        embedding = np.concatenate([e for _, e in chosen])
        labels = np.concatenate([np.tile([float(clip.label == c) for c in CLASSES], (len(e), 1)) for clip, e in chosen])
        sequences.append(LabeledSequence(
            key=f"mix:{index}", group=f"mix:{index % 40}", split="train", embedding=embedding,
            embedder_id=embedder_id, classes=CLASSES, frame_labels=labels))
    return sequences


def train_small_detector(sequences: list[LabeledSequence], embedder_provenance: dict | None = None,
                         frames: FrameSpec = VGGISH_FRAMES):
    from classify.training import train_detector

    return train_detector(
        sequences, ModelConfig(classes=CLASSES, projection_size=32, hidden_size=32, dropout=0.1),
        TrainConfig(epochs=25, patience=6, seed=0, num_threads=1), embedder_provenance=embedder_provenance,
        frames=frames, progress=False)


def events_match(events: list[tuple[str, float, float]], truth: list[tuple[str, float, float]],
                 tolerance: float = 1.5) -> bool:
    """Exactly one event per true stretch, each start and end within `tolerance` seconds."""
    if len(events) != len(truth):
        return False
    return all(label == true_label and abs(start - true_start) <= tolerance and abs(end - true_end) <= tolerance
               for (label, start, end), (true_label, true_start, true_end)
               in zip(sorted(events, key=lambda e: e[1]), sorted(truth, key=lambda e: e[1])))


# --- processes ----------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
HEAVY_MODULES = ("tensorflow", "torch", "resampy", "numba", "tf_keras", "keras", "tensorflow_hub", "jax",
                 "pandas", "sklearn", "scipy", "matplotlib")

IMPORT_BLOCKER = '''
import atexit, json, os, sys

BLOCKED = set(os.environ["HOMESOUND_BLOCKED_MODULES"].split(","))


class BlockHeavyImports:
    """A hub has none of these installed: importing one must fail as it would there."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed on this hub (blocked by the test)")
        return None


sys.meta_path.insert(0, BlockHeavyImports())


@atexit.register
def report_modules():
    with open(os.environ["HOMESOUND_IMPORT_REPORT"], "w") as out:
        json.dump(sorted({name.partition(".")[0] for name in list(sys.modules)}), out)
'''


def hub_environment(directory: Path) -> tuple[dict, Path]:
    """Environment for a subprocess that behaves like a hub without TensorFlow, torch, resampy, pandas..."""
    import os

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(IMPORT_BLOCKER)
    report = directory / "imported.json"
    env = dict(os.environ, PYTHONPATH=f"{directory}{os.pathsep}{REPO}", HOMESOUND_BLOCKED_MODULES=",".join(HEAVY_MODULES),
               HOMESOUND_IMPORT_REPORT=str(report), TF_CPP_MIN_LOG_LEVEL="2")
    return env, report


class ListenProcess:
    """`homesound listen ...` in a subprocess: feed its stdin, read its JSON lines as they come."""

    def __init__(self, arguments: list[str], env: dict | None = None, stderr_path: Path | None = None):
        import os
        import subprocess
        import sys
        import threading

        self.records: list[dict] = []
        self._condition = threading.Condition()
        self._stderr = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
        self.stderr_path = stderr_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "homesound.cli", "listen", *arguments], cwd=REPO,
            env=env or dict(os.environ, PYTHONPATH=str(REPO)), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        import json

        for line in self.process.stdout:
            record = json.loads(line)
            with self._condition:
                self.records.append(record)
                self._condition.notify_all()

    def feed(self, data: bytes, chunk: int = 1 << 16) -> None:
        for start in range(0, len(data), chunk):
            self.process.stdin.write(data[start:start + chunk])
        self.process.stdin.flush()

    def close_stdin(self) -> None:
        self.process.stdin.close()

    def wait_for(self, predicate, timeout: float = 30.0) -> dict:
        """The first record (old or new) that satisfies `predicate`."""
        import time

        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for record in self.records:
                    if predicate(record):
                        return record
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no such record within {timeout} s; got {self.records[-5:]}; "
                                         f"stderr: {self.stderr_text()[-2000:]}")
                self._condition.wait(min(left, 0.5))

    def finish(self, timeout: float = 60.0) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path else ""

    def events(self, kind: str = "end") -> list[tuple[str, float, float]]:
        return [(r["label"], r["start"], r["end"]) for r in self.records if r["type"] == "event" and r["state"] == kind]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()


# --- a real MQTT broker ---------------------------------------------------------------------------------------


class Broker:
    """mosquitto on 127.0.0.1 with a temporary configuration; stop and start it again on the same port."""

    def __init__(self, executable: str, directory: Path):
        self.executable = executable
        self.port = free_port()
        self.directory = directory
        self.config = directory / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.process = None

    def start(self) -> None:
        import socket
        import subprocess
        import time

        log = open(self.directory / "mosquitto.log", "ab")
        self.process = subprocess.Popen([self.executable, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not start: {(self.directory / 'mosquitto.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


class Subscriber:
    """A paho client that records every message (and subscribes again after each reconnection)."""

    def __init__(self, port: int, topic: str = "#"):
        import threading

        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, str, bool]] = []
        self._condition = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="homesound-test-subscriber")
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_message = self._message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _message(self, client, userdata, message) -> None:
        with self._condition:
            self.messages.append((message.topic, message.payload.decode(), bool(message.retain)))
            self._condition.notify_all()

    def wait_for(self, topic: str, payload=None, after: int = 0, timeout: float = 30.0) -> int:
        """Index of the first message on `topic` (with `payload`, a string or a predicate) at index >= after."""
        import time

        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for index in range(after, len(self.messages)):
                    got_topic, got_payload, _ = self.messages[index]
                    if got_topic == topic and (payload is None or (payload(got_payload) if callable(payload)
                                                                   else got_payload == payload)):
                        return index
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {topic} {payload!r} after #{after} within {timeout} s; "
                                         f"last messages: {self.messages[-8:]}")
                self._condition.wait(min(left, 0.5))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
