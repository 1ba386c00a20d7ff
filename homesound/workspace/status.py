"""`homesound status`: one section per workspace component that has something to report.

A component module takes part by defining `status_section(workspace) -> dict` (JSON-ready);
later stages (models, labels, active-learning rounds) add theirs the same way.
"""

from __future__ import annotations

from homesound.workspace.core import Workspace, component_modules


def workspace_status(workspace: Workspace) -> dict:
    """Read-only: a component whose tables an older homesound wrote (not migrated yet) is named, not read."""
    versions = workspace.schema_versions()
    outdated = workspace.outdated_components()
    sections: dict = {"workspace": {"path": str(workspace.path), "schema_versions": versions}}
    for module in component_modules():
        section = getattr(module, "status_section", None)
        if section is None:
            continue
        if module.COMPONENT in outdated:
            sections[module.COMPONENT] = {"note": "not yet upgraded to this homesound's format (any writing "
                                                  "command, e.g. homesound embed, upgrades it)"}
            continue
        sections[module.COMPONENT] = section(workspace)
    return sections
