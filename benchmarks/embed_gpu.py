"""VGGish end to end on one GPU (or the same code on the CPU): decode -> resample -> log-mel -> network -> PCA/uint8.

Prints x real time, where the time goes, and whether the float32 output equals the CPU's (the numpy
front end of `homesound embed` and the torch network on the CPU) on a subset. It needs neither
TensorFlow nor resampy nor soundfile: the weights are RANDOM VGGish weights made here with numpy
(speed does not depend on their values), WAV files are read by a small RIFF reader, and resampy's
kaiser_best table travels in the data folder that --prepare writes.

    # here (soundfile, resampy, ../shared/data): real clips of every shared format as WAV + the filter table
    python benchmarks/embed_gpu.py --prepare out/embed_gpu
    # the same code on this CPU (a check of the script), then on a GPU machine
    python benchmarks/embed_gpu.py --data out/embed_gpu --device cpu --hours 0.05
    python benchmarks/embed_gpu.py --data out/embed_gpu --device cuda --hours 8

Audio: synthetic 44.1 kHz stereo 16-bit WAV files (noise, tones, pauses; a few distinct files,
listed again until --hours is reached, so decoding is real work and the page cache holds them)
and the real clips of --data (each shared format, at its own rate), listed again until
--real-hours. Decoding runs in worker processes, which hand each file over in shared memory.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import math
import multiprocessing
import os
import struct
import sys
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SYNTHETIC_RATE = 44100
SYNTHETIC_FILE_MINUTES = 5.0
SYNTHETIC_DISTINCT_FILES = 6
FILTER_TABLE_FILE = "kaiser_best.npz"
MANIFEST_FILE = "clips.json"
PREPARE_MEGABYTES_PER_FORMAT = 8.0  # what --prepare copies, per shared format (the device carries <= 64 MiB)


# --- WAV without soundfile ----------------------------------------------------------------------------------


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """A RIFF WAV file -> (float32 mono samples, rate): PCM 16/32-bit or IEEE float 32/64-bit, any channels."""
    with open(path, "rb") as stream:
        data = stream.read()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF WAVE file")
    position, fmt, samples = 12, None, None
    while position + 8 <= len(data):
        chunk, size = data[position:position + 4], struct.unpack("<I", data[position + 4:position + 8])[0]
        body = data[position + 8:position + 8 + size]
        if chunk == b"fmt ":
            code, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if code == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: the real code starts the sub-format GUID
                code = struct.unpack("<H", body[24:26])[0]
            fmt = (code, channels, rate, bits)
        elif chunk == b"data":
            samples = body
        position += 8 + size + (size & 1)
    if fmt is None or samples is None:
        raise ValueError(f"{path}: no fmt or data chunk")
    code, channels, rate, bits = fmt
    kinds = {(1, 16): ("<i2", 1 / 32768), (1, 32): ("<i4", 1 / 2147483648), (3, 32): ("<f4", 1.0),
             (3, 64): ("<f8", 1.0)}
    if (code, bits) not in kinds:
        raise ValueError(f"{path}: WAV format {code} with {bits} bits is not read here")
    dtype, scale = kinds[(code, bits)]
    frames = np.frombuffer(samples, dtype=dtype, count=len(samples) // np.dtype(dtype).itemsize // channels * channels)
    frames = frames.reshape(-1, channels)
    mono = frames.mean(axis=1, dtype=np.float64) if channels > 1 else frames[:, 0].astype(np.float64)
    mono = (mono * scale).astype(np.float32)
    return np.where(np.isfinite(mono), mono, np.float32(0)), rate


def write_synthetic_wav(path: str, seconds: float, seed: int) -> None:
    """Noise with tones and pauses, 44.1 kHz stereo 16-bit (like benchmarks/embed_speed.py's recording)."""
    rng = np.random.default_rng(seed)
    with wave.open(path, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(SYNTHETIC_RATE)
        total = int(seconds * SYNTHETIC_RATE)
        for start in range(0, total, SYNTHETIC_RATE * 60):
            n = min(SYNTHETIC_RATE * 60, total - start)
            t = (start + np.arange(n)) / SYNTHETIC_RATE
            tone = 0.3 * np.sin(2 * np.pi * (220 + 110 * seed) * t) * (np.sin(2 * np.pi * t / 7.0) > 0)
            signal = 0.1 * rng.standard_normal((n, 2)) + tone[:, None]
            out.writeframes((np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes())


# --- decoding in worker processes --------------------------------------------------------------------------


SHARED_MEMORY_NEEDED = 4 << 30  # files in flight; a small /dev/shm would kill a worker with SIGBUS when full


def shared_memory_usable() -> bool:
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize >= SHARED_MEMORY_NEEDED


def decode_file(path: str, use_shared_memory: bool) -> tuple:
    """(shared memory name or None, samples or None, count, rate, worker CPU seconds): the main process copies it."""
    from multiprocessing import shared_memory

    started = time.process_time()
    mono, rate = read_wav(path)
    if not use_shared_memory:  # pickled through the pipe instead (slower)
        return None, mono, len(mono), rate, time.process_time() - started
    block = shared_memory.SharedMemory(create=True, size=max(1, mono.nbytes))
    np.ndarray(mono.shape, np.float32, buffer=block.buf)[:] = mono
    name = block.name
    block.close()
    return name, None, len(mono), rate, time.process_time() - started


class Decoded:
    """A decoded file as the main process sees it: a view of the worker's shared memory until released."""

    def __init__(self, result: tuple):
        from multiprocessing import shared_memory

        name, mono, count, self.rate, self.cpu_seconds = result
        self.block = shared_memory.SharedMemory(name=name) if name is not None else None
        self.mono = np.ndarray((count,), np.float32, buffer=self.block.buf) if self.block else mono

    def release(self) -> None:
        self.mono = None
        if self.block is not None:
            self.block.close()
            self.block.unlink()


# --- timing --------------------------------------------------------------------------------------------------


class StageTimer:
    """Seconds per stage: CUDA events on a GPU (read once at the end, no stalls), wall clock on the CPU."""

    def __init__(self, device):
        import torch

        self.torch = torch
        self.cuda = device.type == "cuda"
        self.pending: list[tuple[str, object, object]] = []
        self.seconds: dict[str, float] = {}

    def stage(self, name: str, host: bool = False):
        """`host`: work the CPU does itself (wall clock even on a GPU, where events would count idle gaps)."""
        timer = self

        class Stage:
            def __enter__(self):
                if timer.cuda and not host:
                    self.start = timer.torch.cuda.Event(enable_timing=True)
                    self.start.record()
                else:
                    self.start = time.perf_counter()

            def __exit__(self, *exc):
                if timer.cuda and not host:
                    end = timer.torch.cuda.Event(enable_timing=True)
                    end.record()
                    timer.pending.append((name, self.start, end))
                else:
                    timer.add(name, time.perf_counter() - self.start)

        return Stage()

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def collect(self) -> dict[str, float]:
        if self.cuda:
            self.torch.cuda.synchronize()
            for name, start, end in self.pending:
                self.add(name, start.elapsed_time(end) / 1000)
            self.pending = []
        return self.seconds


# --- the pipeline ---------------------------------------------------------------------------------------------


@dataclass
class Job:
    path: str
    origin: str  # "synthetic" or the shared format of a real clip
    seconds: float


class GpuPipeline:
    """Decoded mono audio -> uint8 embeddings, all on one device; network batches span files."""

    def __init__(self, device, network, pca: dict, batch_size: int, filter_table, timer: StageTimer,
                 transfer: str = "pinned"):
        import torch

        from embed.params import VGGISH
        from embed.torch_frontend import TorchLogMel

        self.torch, self.device, self.network, self.batch_size = torch, device, network, batch_size
        self.timer, self.filter_table, self.transfer = timer, filter_table, transfer
        self.params = VGGISH
        self.log_mel = TorchLogMel(device=device)
        self.resamplers: dict[int, object] = {}
        self.eigen = torch.tensor(pca["pca_eigen_vectors"], dtype=torch.float64, device=device)
        self.means = torch.tensor(pca["pca_means"].reshape(-1), dtype=torch.float64, device=device)
        self.pending: list = []  # (file index, examples) waiting for a full batch
        self.pending_count = 0
        self.raw: dict[int, list] = {}
        self.quantized: dict[int, list] = {}

    def resampler(self, rate: int):
        from embed.torch_frontend import TorchResampler

        if rate not in self.resamplers:
            self.resamplers[rate] = TorchResampler(rate, device=self.device, filter_table=self.filter_table)
        return self.resamplers[rate]

    def add(self, index: int, decoded: Decoded, keep_raw: bool) -> None:
        """One decoded file: copied once (into pinned memory on a GPU), then the shared memory is released."""
        torch = self.torch
        with self.timer.stage("shared memory -> pinned -> device (host)", host=True):
            if self.device.type == "cuda" and self.transfer == "pinned":
                pinned = torch.empty(len(decoded.mono), dtype=torch.float32, pin_memory=True)
                pinned.numpy()[:] = decoded.mono
                host = pinned.to(self.device, non_blocking=True)  # the caching allocator keeps `pinned` until done
            elif self.device.type == "cuda":  # straight from shared memory: the driver stages it, no host copy of ours
                host = torch.from_numpy(decoded.mono).to(self.device)
            else:
                host = torch.from_numpy(decoded.mono.copy())
            decoded.release()
        with self.timer.stage("resample"):
            waveform = self.resampler(decoded.rate)(host)
        with self.timer.stage("log-mel"):
            examples = self.log_mel(waveform)
        if keep_raw:
            self.raw[index] = []
        self.quantized[index] = []
        if len(examples):
            self.pending.append((index, examples, keep_raw))
            self.pending_count += len(examples)
        while self.pending_count >= self.batch_size:
            self._run_batch(self.batch_size)

    def finish(self) -> None:
        if self.pending_count:
            self._run_batch(self.pending_count)

    def _run_batch(self, size: int) -> None:
        torch = self.torch
        pieces, owners, taken = [], [], 0
        while taken < size:
            index, examples, keep_raw = self.pending[0]
            part = examples[:size - taken]
            pieces.append(part)
            owners.append((index, len(part), keep_raw))
            taken += len(part)
            if len(part) == len(examples):
                self.pending.pop(0)
            else:
                self.pending[0] = (index, examples[len(part):], keep_raw)
        self.pending_count -= size
        batch = torch.cat(pieces)
        if len(batch) < self.batch_size and self.device.type == "cuda":  # cuDNN's autotuner sees one shape only
            batch = torch.cat([batch, batch.new_zeros((self.batch_size - len(batch), *batch.shape[1:]))])
        with self.timer.stage("network"):
            raw = self.network.run(batch)[:size]
        with self.timer.stage("PCA + uint8"):
            projected = (raw.double() - self.means) @ self.eigen.T
            low, high = self.params.quantize_min, self.params.quantize_max
            quantized = ((projected.clamp(low, high) - low) * (255.0 / (high - low))).to(torch.uint8)
        offset = 0
        for index, count, keep_raw in owners:
            self.quantized[index].append(quantized[offset:offset + count])
            if keep_raw:
                self.raw[index].append(raw[offset:offset + count])
            offset += count

    def results(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        torch = self.torch
        quantized = torch.cat(self.quantized[index]).cpu().numpy() if self.quantized[index] else np.zeros((0, 128))
        raw = None
        if index in self.raw:
            raw = torch.cat(self.raw[index]).cpu().numpy() if self.raw[index] else np.zeros((0, 128), np.float32)
        return quantized, raw


def cpu_reference(path: str, network, pca, filter_table) -> tuple[np.ndarray, np.ndarray]:
    """What `homesound embed` computes on the CPU: numpy resampling and log-mel (float64), torch network on the CPU."""
    from embed.frontend import ExampleChunker, waveform_to_examples
    from embed.params import VGGISH
    from embed.postprocess import postprocess
    from embed.resample import StreamingResampler

    mono, rate = read_wav(path)
    resampler = StreamingResampler(rate, VGGISH.sample_rate, VGGISH.resample_filter, filter_table)
    chunker = ExampleChunker(64)
    chunks = chunker.push(resampler.push(mono.astype(np.float64)))
    chunks += chunker.push(resampler.finish()) + chunker.finish()
    examples = [waveform_to_examples(chunk) for _, chunk in chunks]
    raw = network(np.concatenate(examples)) if examples else np.zeros((0, 128), np.float32)
    return raw, postprocess(raw, pca)


# --- setup ----------------------------------------------------------------------------------------------------


def load_filter_table(data: Path | None):
    if data is not None and (data / FILTER_TABLE_FILE).is_file():
        with np.load(data / FILTER_TABLE_FILE) as stored:
            return stored["half_window"], int(stored["precision"])
    try:
        from embed.resample import load_filter_table as from_resampy

        return from_resampy("kaiser_best")
    except ImportError:
        sys.exit(f"neither resampy nor {FILTER_TABLE_FILE} in --data: run --prepare where resampy is installed")


def make_jobs(args, scratch: Path, pool) -> list[Job]:
    jobs: list[Job] = []
    if args.hours > 0:
        per_file = min(SYNTHETIC_FILE_MINUTES * 60, args.hours * 3600)
        distinct = max(1, min(SYNTHETIC_DISTINCT_FILES, math.ceil(args.hours * 3600 / per_file)))
        paths = [str(scratch / f"synthetic-{seed}.wav") for seed in range(distinct)]
        list(pool.map(write_synthetic_wav, paths, [per_file] * distinct, range(distinct)))
        for copy in range(math.ceil(args.hours * 3600 / per_file)):
            jobs.append(Job(paths[copy % distinct], "synthetic", per_file))
    if args.data is not None and args.real_hours > 0 and (args.data / MANIFEST_FILE).is_file():
        clips = json.loads((args.data / MANIFEST_FILE).read_text())
        by_format: dict[str, list] = {}
        for clip in clips:
            by_format.setdefault(clip["format"], []).append(clip)
        mixed = [clip for group in itertools.zip_longest(*by_format.values()) for clip in group if clip]
        seconds = 0.0
        for clip in itertools.cycle(mixed):  # every format early, then again until --real-hours
            jobs.append(Job(str(args.data / clip["file"]), clip["format"], clip["seconds"]))
            seconds += clip["seconds"]
            if seconds >= args.real_hours * 3600 and len(jobs) >= len(by_format):
                break
    return jobs


def build_network(device, precision: str, batch_size: int, channels_last: bool, weights_file: str | None):
    import torch

    from embed.random_weights import random_weights
    from embed.torch_network import TorchNetwork, to_torch_layout

    if weights_file:
        weights = torch.load(weights_file, map_location="cpu", weights_only=True)["weights"]
    else:
        weights = to_torch_layout(random_weights(0))
    return TorchNetwork(weights, device=str(device), precision=precision, batch_size=batch_size,
                        channels_last=channels_last)


def time_network(network, examples, repeats: int = 3) -> float:
    """Seconds of audio per second for the network alone (after a warm-up that lets cuDNN choose)."""
    import torch

    network.run(examples)
    if network.device.type == "cuda":
        torch.cuda.synchronize()
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        network.run(examples)
        if network.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return len(examples) * 0.96 / best


def compare(reference_raw, reference_uint8, raw, quantized) -> dict:
    if raw.shape != reference_raw.shape:
        return {"examples": int(len(raw)), "max_relative_raw_error": math.inf, "max_uint8_difference": 255}
    if not len(raw):
        return {"examples": 0, "max_relative_raw_error": 0.0, "max_uint8_difference": 0}
    scale = float(np.abs(reference_raw).max()) or 1.0
    return {"examples": int(len(raw)), "max_relative_raw_error": float(np.abs(raw - reference_raw).max() / scale),
            "max_uint8_difference": int(np.abs(quantized.astype(int) - reference_uint8).max())}


# --- main ---------------------------------------------------------------------------------------------------


def run(args) -> int:
    import torch

    from embed.random_weights import random_pca
    from embed.postprocess import PCAParams
    from embed.tflite import embedding_error

    workers = args.workers or max(1, (os.cpu_count() or 2) - 2)
    use_shared_memory = shared_memory_usable()
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: PyTorch sees no CUDA GPU here")
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {name}; {workers} decoding processes handing over through "
          f"{'shared memory' if use_shared_memory else 'pipes (/dev/shm too small)'}; "
          + ("RANDOM VGGish weights (speed does not depend on their values)" if not args.weights
             else f"weights {args.weights}"))
    filter_table = load_filter_table(args.data)
    started = time.perf_counter()
    pca_arrays = random_pca(0)
    pca = PCAParams(pca_arrays["pca_eigen_vectors"], pca_arrays["pca_means"])

    import tempfile

    with tempfile.TemporaryDirectory(prefix="embed_gpu_") as scratch:
        jobs = make_jobs(args, Path(scratch), pool)
        list(pool.map(int, range(workers * 4)))  # every worker started before timing
        audio_seconds = sum(job.seconds for job in jobs)
        origins = sorted({job.origin for job in jobs})
        print(f"{audio_seconds / 3600:.2f} h of audio in {len(jobs)} files ({', '.join(origins)}); "
              f"setup {time.perf_counter() - started:.1f} s")

        # The network alone, both memory layouts, float32 (and the opt-in precisions, measured against it).
        probe = torch.from_numpy(np.random.default_rng(0).normal(-2, 2, (args.batch_size, 96, 64)).astype(np.float32))
        layouts = {}
        for channels_last in (False, True):
            network = build_network(device, "float32", args.batch_size, channels_last, args.weights)
            layouts[channels_last] = (time_network(network, probe.to(device)), network)
            print(f"network alone, float32, {'channels-last' if channels_last else 'NCHW'}: "
                  f"{layouts[channels_last][0]:,.0f}x real time")
        channels_last = layouts[True][0] >= layouts[False][0]
        network = layouts[channels_last][1]
        del layouts[not channels_last]
        float32_raw = network(probe)
        for precision in args.precisions:
            other = build_network(device, precision, args.batch_size, channels_last, args.weights)
            speed = time_network(other, probe.to(device))
            error = embedding_error(float32_raw, other(probe), pca)
            print(f"network alone, {precision} (opt-in, not AudioSet-compatible): {speed:,.0f}x real time; vs float32: "
                  f"max relative raw error {error['max_relative_raw_error']:.2e}, uint8 max difference "
                  f"{error['max_uint8_difference']}, {100 * error['uint8_values_differing']:.2f} % of values differ")
            del other

        # End to end.
        timer = StageTimer(device)
        pipeline = GpuPipeline(device, network, pca_arrays, args.batch_size, filter_table, timer, args.transfer)
        reference_jobs = pick_reference_jobs(jobs, args.reference_minutes)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        waiting = decode_cpu = 0.0
        in_flight: dict = {}
        queue = list(enumerate(jobs))
        while queue or in_flight:
            while queue and len(in_flight) < 2 * workers:
                index, job = queue.pop(0)
                in_flight[pool.submit(decode_file, job.path, use_shared_memory)] = index
            wait_started = time.perf_counter()
            done, _ = concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
            waiting += time.perf_counter() - wait_started
            for future in done:
                index = in_flight.pop(future)
                decoded = Decoded(future.result())
                decode_cpu += decoded.cpu_seconds
                pipeline.add(index, decoded, keep_raw=index in reference_jobs)
        pipeline.finish()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
        stages = timer.collect()

        print(f"\nend to end: {audio_seconds / 3600:.2f} h in {wall:.2f} s = {audio_seconds / wall:,.0f}x real time "
              f"({args.device}, float32, batch {args.batch_size}, {'channels-last' if channels_last else 'NCHW'}, "
              f"{args.transfer} transfer)")
        print(f"  {'decode (worker CPU seconds, all workers)':<44} {decode_cpu:8.2f} s")
        print(f"  {'main process waiting for decoded files':<44} {waiting:8.2f} s")
        for stage, seconds in stages.items():
            where = "" if "(host)" in stage else " (GPU)" if device.type == "cuda" else " (CPU)"
            print(f"  {stage + where:<44} {seconds:8.2f} s  {100 * seconds / wall:5.1f} % of wall")

        # The CPU's output on a subset.
        cpu_network = build_network(torch.device("cpu"), "float32", 64, True, args.weights)
        worst = {"examples": 0, "max_relative_raw_error": 0.0, "max_uint8_difference": 0}
        checked = set()
        for index in sorted(reference_jobs):
            quantized, raw = pipeline.results(index)
            reference_raw, reference_uint8 = cpu_reference(jobs[index].path, cpu_network, pca, filter_table)
            result = compare(reference_raw, reference_uint8, raw, quantized)
            worst = {"examples": worst["examples"] + result["examples"],
                     "max_relative_raw_error": max(worst["max_relative_raw_error"], result["max_relative_raw_error"]),
                     "max_uint8_difference": max(worst["max_uint8_difference"], result["max_uint8_difference"])}
            checked.add(jobs[index].origin)
        equal = worst["max_relative_raw_error"] <= 1e-4 and worst["max_uint8_difference"] <= 1
        print(f"\nfloat32 output vs the CPU's (numpy front end + torch network on the CPU), {worst['examples']} examples "
              f"of {', '.join(sorted(checked))}: max relative raw error {worst['max_relative_raw_error']:.2e}, "
              f"uint8 max difference {worst['max_uint8_difference']} -> {'EQUAL' if equal else 'NOT EQUAL'} "
              "(tolerance 1e-4, uint8 within 1)")
    pool.shutdown()
    return 0 if equal else 1


def pick_reference_jobs(jobs: list[Job], minutes: float) -> set[int]:
    """One file of each origin first, then more, up to `minutes` of audio (distinct paths only)."""
    chosen, seconds, seen = set(), 0.0, set()
    for first_pass in (True, False):
        origins = set()
        for index, job in enumerate(jobs):
            if job.path in seen or (first_pass and job.origin in origins):
                continue
            if not first_pass and seconds + job.seconds > minutes * 60:
                continue
            chosen.add(index)
            seen.add(job.path)
            origins.add(job.origin)
            seconds += job.seconds
    return chosen


def prepare(folder: Path) -> None:
    """Real clips of every shared format as WAV (the device has no libsndfile), and resampy's kaiser_best table."""
    import pandas as pd
    import soundfile

    from embed.resample import load_filter_table as from_resampy

    shared = next((path for path in (REPO.parent / "shared" / "data", Path("/work/shared/data"))
                   if (path / "clips.csv").is_file()), None)
    if shared is None:
        sys.exit("../shared/data is missing")
    folder.mkdir(parents=True, exist_ok=True)
    half_window, precision = from_resampy("kaiser_best")
    np.savez(folder / FILTER_TABLE_FILE, half_window=half_window, precision=precision)
    clips = pd.read_csv(shared / "clips.csv")
    manifest = []
    for file_format, group in clips.groupby("format"):  # by the format column, shuffled with a fixed seed
        budget = PREPARE_MEGABYTES_PER_FORMAT * 1e6
        for row in group.sample(frac=1.0, random_state=0).itertuples():
            samples, rate = soundfile.read(shared / row.path, dtype="float32", always_2d=True)
            if samples.nbytes > budget:
                continue
            budget -= samples.nbytes
            name = f"{len(manifest):04d}-{Path(row.path).stem}.wav"
            subtype = "PCM_16" if "PCM_16" in file_format else "FLOAT"  # exactly the decoded values
            soundfile.write(folder / name, samples, rate, subtype=subtype)
            manifest.append({"file": name, "format": file_format, "label": row.label, "source": row.source,
                             "samplerate": int(rate), "channels": int(samples.shape[1]),
                             "seconds": len(samples) / rate})
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    size = sum(file.stat().st_size for file in folder.iterdir()) / 2**20
    minutes = sum(clip["seconds"] for clip in manifest) / 60
    print(f"{len(manifest)} real clips ({minutes:.1f} min, {', '.join(sorted(set(c['format'] for c in manifest)))}) "
          f"and the kaiser_best table in {folder}: {size:.1f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", type=Path, metavar="DIR", help="write real clips (WAV) and the filter table")
    parser.add_argument("--data", type=Path, metavar="DIR", help="what --prepare wrote (real clips, filter table)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu: the same code")
    parser.add_argument("--hours", type=float, default=8.0, help="hours of synthetic 44.1 kHz stereo audio")
    parser.add_argument("--real-hours", type=float, help="hours of real clips, listed again (default: --hours / 4)")
    parser.add_argument("--batch-size", type=int, default=None, help="examples per network call "
                        "(default 1024 on cuda, 64 on cpu)")
    parser.add_argument("--workers", type=int, help="decoding processes (default: cores - 2)")
    parser.add_argument("--transfer", choices=("pinned", "pageable"), default="pinned",
                        help="how decoded audio reaches the GPU: copied into pinned memory first (default; "
                             "5,562x vs 5,199x end to end on an H200), or straight from shared memory")
    parser.add_argument("--reference-minutes", type=float, default=10.0,
                        help="audio checked against the CPU's output (one file of each origin at least)")
    parser.add_argument("--precisions", default=None,
                        help="opt-in precisions to measure against float32 (default: tf32,bf16 on cuda, none on cpu)")
    parser.add_argument("--weights", help="a converted .torch.pt file instead of random weights")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return 0
    args.real_hours = args.hours / 4 if args.real_hours is None else args.real_hours
    args.batch_size = args.batch_size or (1024 if args.device.startswith("cuda") else 64)
    default_precisions = "tf32,bf16" if args.device.startswith("cuda") else ""
    args.precisions = [p for p in (args.precisions if args.precisions is not None else default_precisions).split(",")
                       if p]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
