"""A real Ray cluster on this machine for the tests and benchmarks (never used by the product): a head
node and worker nodes, each its own `ray start --block` process tree, so one node can be killed with -9
like a machine that fails.

Everything lives in one temporary folder (Ray's session files and logs); nothing touches the
machine's default cluster (/tmp/ray) or other clusters running beside it, and `stop()` ends only
the processes this cluster started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from homesound_testkit.ports import free_port

# Node deaths are noticed in ~2 s instead of Ray's default ~30 s, so a fault test does not wait long.
FAST_FAILURE_DETECTION = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "4",
                          "RAY_health_check_timeout_ms": "1000"}
OBJECT_STORE_BYTES = 256 << 20  # small: the tests move a few MB
RAY = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())"]


class LocalCluster:
    def __init__(self, root: str | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="homesound-ray-"))
        self.root.mkdir(parents=True, exist_ok=True)
        # Ray keeps its socket paths short; the session folder lives under a short name too.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="hsray", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []
        self.killed: list[subprocess.Popen] = []
        self.env = {**os.environ, **self.driver_env(), **FAST_FAILURE_DETECTION}

    @staticmethod
    def driver_env() -> dict[str, str]:
        """What a driver needs in its environment to use this cluster: a loopback test cluster runs without
        Ray's token authentication (which would otherwise depend on a ~/.ray/auth_token left by whoever)."""
        return {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}

    def start_head(self, cpus: int = 1) -> None:
        self._start("head", ["--head", "--port", str(self.port), "--ray-client-server-port", str(free_port()),
                             "--include-dashboard", "false"], cpus)
        self.wait_for_nodes(1)

    def add_node(self, cpus: int = 1) -> subprocess.Popen:
        """A worker node joined to the head; returns its `ray start --block` process (kill_node takes it)."""
        process = self._start(f"node{len(self.nodes)}", ["--address", self.address], cpus)
        self.wait_for_nodes(len(self.running()))
        return process

    def running(self) -> list[subprocess.Popen]:
        return [process for process in self.nodes if process not in self.killed]

    def _start(self, name: str, arguments: list[str], cpus: int) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")
        process = subprocess.Popen(
            [*RAY, "start", *arguments, "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus), "--num-gpus", "0",
             "--object-store-memory", str(OBJECT_STORE_BYTES), "--temp-dir", str(self.temp_dir),
             "--disable-usage-stats", "--block"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.nodes.append(process)
        return process

    def alive_nodes(self) -> int:
        result = subprocess.run(
            [sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
             "print(sum(node['Alive'] for node in ray.nodes()))", self.address],
            env=self.env, capture_output=True, text=True, timeout=120)
        return int(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 and result.stdout.strip() else 0

    def wait_for_nodes(self, count: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.running():
                if process.poll() is not None:
                    raise RuntimeError(f"a Ray node exited ({process.returncode}); see {self.root}/*.log")
            if self.alive_nodes() == count:
                return
            time.sleep(1)
        raise TimeoutError(f"the Ray cluster did not reach {count} nodes in {timeout:.0f} s; see {self.root}/*.log")

    def kill_node(self, process: subprocess.Popen) -> None:
        """kill -9 a node: its `ray start`, its raylet and every worker process the raylet started."""
        self.killed.append(process)
        for pid in [*_descendants(process.pid), process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()

    def stop(self) -> None:
        for process in reversed(self.running()):
            self.kill_node(process)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Ray's workers start their own sessions, so the process group is not enough)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found
