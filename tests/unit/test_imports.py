"""The import graph runs one way (issue 13): values and ports at the bottom, then the adapters, the job
contract, the actions, the delivery handler, the wiring, the CloudEvent adapter and the operator CLI.
Every import counts, including those inside functions; and the function never imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAYERS: list[set[str]] = [
    {
        "errors",
        "models",
        "settings",
        "logs",
        "continuation",
        "multipart",
        "part10",
        "layout",
        "pool",
        "ports",
        "request",
        "sweep_request",
        "events",
        "manifest",
        "media_type",
        "retries",
        "enumeration",
    },
    {"dicomweb", "http_exchange", "dicom_json", "orthanc", "storage", "pubsub"},
    {"job"},
    {"search", "retrieve", "delete", "archive", "verify", "restore", "operations", "tier", "sweep"},
    {"delivery"},
    {"wiring"},
    {"cloud_event"},
    {"cli", "__main__"},
]
ACTIONS_BELOW = {
    "search": set(),
    "retrieve": {"search"},
    "delete": {"search", "operations"},
    "archive": {"search", "retrieve"},
    "verify": {"search"},
    "restore": {"search", "verify", "operations"},
    "tier": {"search", "verify", "operations"},
    "sweep": set(),
}


def layer_of(module: str) -> int:
    """worker.x or worker.x.y -> the layer of x."""
    top = module.split(".")[1]
    for number, layer in enumerate(LAYERS):
        if top in layer:
            return number
    raise AssertionError(f"{module} is in no layer of tests/unit/test_imports.py: place it there")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports (at the top or inside a function), absolute."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = (
                    module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
                )
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from worker import x`
    return found


def worker_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((ROOT / "worker").rglob("*.py"))}


MODULES = worker_modules()


def worker_imports(path: Path) -> set[str]:
    return {name for name in imports(path) if name in MODULES and name != "worker"}


@pytest.mark.parametrize("module", sorted(name for name in MODULES if name != "worker"))
def test_a_module_imports_only_its_layer_or_below(module: str) -> None:
    mine = layer_of(module)
    upward = sorted(name for name in worker_imports(MODULES[module]) if layer_of(name) > mine)

    assert not upward, f"{module} imports {upward}, above its layer"


@pytest.mark.parametrize("action", sorted(ACTIONS_BELOW))
def test_an_action_uses_only_the_actions_below_it(action: str) -> None:
    used = {name.split(".")[1] for name in worker_imports(MODULES[f"worker.{action}"])}

    assert used & set(ACTIONS_BELOW) <= ACTIONS_BELOW[action]


def test_the_function_never_imports_the_cli() -> None:
    seen: set[str] = set()
    pending = [name for name in imports(ROOT / "main.py") if name in MODULES]
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(worker_imports(MODULES[name]))

    assert "worker.wiring" in seen and "worker.archive" in seen  # the closure reaches the actions
    assert not [name for name in seen if name == "worker.cli" or name.startswith("worker.cli.")]


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def later():\n    from worker.delivery import Worker\n", encoding="utf-8")

    assert "worker.delivery" in imports(sample)
