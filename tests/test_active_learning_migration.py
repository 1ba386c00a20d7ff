"""Workspaces written before queue and rounds referred to models by id: their text ids and round statuses
migrate forward, and nothing a person could read before is lost."""

from __future__ import annotations

import pytest

from homesound.workspace import Workspace
from homesound.workspace import active_learning as al
from homesound.workspace.classify import get_model, list_models, register_model

KNOWN = "a1" * 32  # a model the old workspace had registered (homesound detect)
UNKNOWN = "b2" * 32  # a model it knew only as "<stem>@<sha12>" (homesound rank)


@pytest.fixture
def old_workspace(tmp_path, monkeypatch):
    """A workspace at active_learning schema v1, with the text model ids and round words of that time."""
    path = tmp_path / "home.db"
    with monkeypatch.context() as patch:
        patch.setattr(al, "MIGRATIONS", al.MIGRATIONS[:1])
        with Workspace(path) as ws:
            known = register_model(ws, path="/models/first.pt", sha256=KNOWN, config={}, classes=("crying",),
                                   thresholds={"crying": 0.5}, embedder_ids=("e",))
            with ws.transaction() as db:
                db.executemany(
                    "INSERT INTO al_rounds(id, started_at, status, model_id, config_json) VALUES (?, 't', ?, ?, '{}')",
                    [(1, "finished", f"first@{KNOWN[:12]}"), (2, "failed", "/models/given.pt"),
                     (3, "finished", f"zero-shot@{UNKNOWN[:12]}")],
                )
                db.executemany(
                    "INSERT INTO al_queue(window_key, content_sha256, recording_path, start_seconds, end_seconds,"
                    " strategy, reason, model_id, round_id, queued_at) VALUES (?, 'c', '/a.flac', ?, ?, 'entropy',"
                    " 'r', ?, ?, 't')",
                    [("c@0.00-5.00", 0, 5, f"first@{KNOWN[:12]}", 1),
                     ("c@5.00-10.00", 5, 10, f"zero-shot@{UNKNOWN[:12]}", 3),
                     ("c@10.00-15.00", 10, 15, None, None)],
                )
    return path, known


def test_old_text_model_ids_become_registered_models_and_read_as_before(old_workspace):
    path, known = old_workspace
    with Workspace(path) as ws:
        queue = {row.key: row for row in al.queued_windows(ws)}
        rounds = al.list_rounds(ws)
        models = list_models(ws)
    assert queue["c@0.00-5.00"].model_id == known
    assert queue["c@0.00-5.00"].model_version == f"first@{KNOWN[:12]}"  # what Label Studio was shown
    unknown = queue["c@5.00-10.00"].model_id
    assert unknown not in (None, known) and queue["c@5.00-10.00"].model_version == f"zero-shot@{UNKNOWN[:12]}"
    assert (queue["c@10.00-15.00"].model_id, queue["c@10.00-15.00"].model_version) == (None, None)
    recovered = next(m for m in models if m["id"] == unknown)
    assert recovered["config"] == {"migrated_from": f"zero-shot@{UNKNOWN[:12]}"} and len(models) == 2

    assert [(r["status"], r["model_id"], r["model"]) for r in rounds] == [
        ("completed", known, f"first@{KNOWN[:12]}"),
        ("failed", None, None),  # failed before its model loaded: the --model it was given is in its config
        ("completed", unknown, f"zero-shot@{UNKNOWN[:12]}"),
    ]


def test_a_migrated_model_row_is_completed_when_its_file_is_registered_again(old_workspace):
    path, _ = old_workspace
    with Workspace(path) as ws:
        (row,) = [r for r in al.queued_windows(ws) if r.key == "c@5.00-10.00"]
        again = register_model(ws, path="zero-shot", sha256=UNKNOWN, config={"model": {"combine": "max"}},
                               classes=("crying", "laughter"), thresholds={"crying": 0.5, "laughter": 0.5},
                               embedder_ids=())
        model = get_model(ws, again)
    assert again == row.model_id
    assert (model["sha256"], model["classes"], model["config"]) == (UNKNOWN, ["crying", "laughter"],
                                                                    {"model": {"combine": "max"}})
