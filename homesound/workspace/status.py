"""`homesound status`: one section per workspace component that has something to report.

A component module takes part by defining `status_section(workspace) -> dict` (JSON-ready);
later stages (models, labels, active-learning rounds) add theirs the same way.
"""

from __future__ import annotations

import importlib

from homesound.workspace.core import COMPONENT_MODULES, Workspace


def workspace_status(workspace: Workspace) -> dict:
    sections: dict = {"workspace": {"path": str(workspace.path), "schema_versions": workspace.schema_versions()}}
    for module_name in COMPONENT_MODULES:
        module = importlib.import_module(module_name)
        section = getattr(module, "status_section", None)
        if section is not None:
            sections[module.COMPONENT] = section(workspace)
    return sections
