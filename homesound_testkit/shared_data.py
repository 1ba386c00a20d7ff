"""Where the shared real data lies (clips, AudioSet metadata, real weights), for the tests and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def find_shared_data() -> Path | None:
    """../shared/data beside the checkout (as in CI), or $HOMESOUND_SHARED_DATA for a checkout elsewhere."""
    configured = os.environ.get("HOMESOUND_SHARED_DATA")
    candidate = Path(configured) if configured else REPO.parent / "shared" / "data"
    return candidate if (candidate / "clips.csv").is_file() else None
