"""The layering the code relies on, read from the source: command-line modules only parse and call jobs,
the shared core never reaches up into a stage, stages depend one way, the product never uses test code."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("homesound", "embed", "audioset_fetch", "classify", "active_learning", "homesound_hub")
COMMAND_LINE_MODULES = {"homesound.cli", "homesound.workspace_cli", "embed.cli", "audioset_fetch.cli", "classify.cli",
                        "classify.labels_cli", "active_learning.cli", "homesound_hub.cli"}
# What each stage may import of the others (the shared core `homesound` is open to all).
STAGE_DEPENDENCIES = {
    "embed": set(),
    "audioset_fetch": set(),
    "classify": {"embed"},
    "active_learning": {"classify", "embed"},
    "homesound_hub": {"classify", "embed"},
}


def imported_modules(source: str) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def product_files() -> list[Path]:
    return sorted(path for package in PRODUCT for path in (REPO / package).rglob("*.py"))


def test_the_packages_checked_are_all_there():
    assert all((REPO / package / "__init__.py").is_file() for package in (*PRODUCT, "homesound_testkit"))
    assert {f"{name.rsplit('.', 1)[0]}" for name in COMMAND_LINE_MODULES} <= set(PRODUCT) | {"homesound"}
    assert all((REPO / (name.replace(".", "/") + ".py")).is_file() for name in COMMAND_LINE_MODULES)


def layer_violations(name: str, source: str) -> list[str]:
    imports = imported_modules(source)
    package = name.split(".")[0]
    found = []
    if name != "homesound.cli" and imports & COMMAND_LINE_MODULES:  # only the command's root registers them
        found.append(f"{name} imports the command-line module(s) {sorted(imports & COMMAND_LINE_MODULES)}")
    if {i for i in imports if i.split(".")[0] in ("tests", "homesound_testkit")}:
        found.append(f"{name} imports test code")
    stages = {i.split(".")[0] for i in imports} & set(STAGE_DEPENDENCIES)
    if package == "homesound" and name not in COMMAND_LINE_MODULES and stages:
        found.append(f"{name} (the shared core) imports the stage(s) {sorted(stages)}")
    elif package in STAGE_DEPENDENCIES and not stages - {package} <= STAGE_DEPENDENCIES[package]:
        found.append(f"{name} imports {sorted(stages - {package} - STAGE_DEPENDENCIES[package])}")
    return found


def test_layers():
    assert [problem for path in product_files()
            for problem in layer_violations(module_name(path), path.read_text())] == []


def test_a_command_line_module_importing_another_is_caught():
    source = "def run(args):\n    from embed.cli import register\n    import active_learning\n"
    assert layer_violations("classify.cli", source) == [
        "classify.cli imports the command-line module(s) ['embed.cli']", "classify.cli imports ['active_learning']"]


def test_runs_are_started_and_finished_only_by_recorded():
    """Every job records its run through homesound.workspace.runs.recorded, so every run ends in a fixed status."""
    direct = []
    for path in product_files():
        if module_name(path) == "homesound.workspace.runs":
            continue
        used = {node.attr if isinstance(node, ast.Attribute) else node.id
                for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, (ast.Name, ast.Attribute))}
        if used & {"_start_run", "_finish_run", "start_run", "finish_run"}:
            direct.append(module_name(path))
    assert direct == []
