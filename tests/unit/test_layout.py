"""The tree shows what runs: these pin the dependency rules of README's Layout section.

They read the package's source with `ast` (no imports, so a rule broken in a
module that is never imported by the tests still fails here).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "daemon" / "textwatch"
FOUNDATION = {"textwatch.config", "textwatch.errors", "textwatch.log", "textwatch.onnx"}


def modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every textwatch module `path` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("textwatch"):
            names.add(node.module)
            if node.module == "textwatch":  # from textwatch import bus, wire
                names.update(f"textwatch.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("textwatch"))
    return names


def test_detect_is_a_leaf() -> None:
    """detect/ imports only itself and config/errors/log/onnx: never train/ (the torch twin of the
    graph lives in detect/torchnet.py now) nor tracking/ (plan.py moved there)."""
    for path in modules(PACKAGE / "detect"):
        above = {name for name in imported(path) if not name.startswith(("textwatch.detect", *FOUNDATION))}
        assert not above, f"{path.name} imports {sorted(above)}"


@pytest.mark.parametrize("folder", ["processes", "tracking", "detect"])
def test_the_runtime_never_imports_tools_or_training(folder: str) -> None:
    for path in modules(PACKAGE / folder):
        bad = {name for name in imported(path) if name.startswith(("textwatch.tools", "textwatch.train"))}
        assert not bad, f"{folder}/{path.name} imports {sorted(bad)}"


def test_no_module_outside_bus_makes_a_zeromq_socket() -> None:
    """Every socket is made by a factory in bus.py, so its owner table is backed by code."""
    makers = []
    for path in modules(PACKAGE):
        if path.name == "bus.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("socket", "get_monitor_socket")
                and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "socket")  # the stdlib
            ):
                makers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not makers, f"ZeroMQ sockets made outside bus.py: {makers}"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_building_the_cli_never_imports_torch() -> None:
    """Regression: cli.py imported the trainer to build `textwatch train`'s options, so every
    command (`textwatch run` included) paid for importing torch."""
    out = run_python("import sys, textwatch.cli as c; c.build_parser(); print('torch' in sys.modules)")
    assert out.stdout.strip() == "False", out.stderr


def test_train_without_torch_says_how_to_install_it() -> None:
    """Regression: with torch missing, `textwatch train` died with a NameError (its handler, a
    lambda, used the name of an `except ... as err` block, which Python deletes after the block)."""
    out = run_python(
        "import sys; sys.modules['torch'] = None\n"
        "from textwatch.cli import main\n"
        "raise SystemExit(main(['train', '--out', 'runs/never']))"
    )
    assert out.returncode == 69, out.stderr
    assert "training needs PyTorch" in out.stderr and "pip install" in out.stderr


def test_every_role_names_a_process_class_of_that_role() -> None:
    """The supervisor starts children by class name (child.load_class in the child), so a typo
    would only show when a child starts: check the table here."""
    from textwatch.processes import child
    from textwatch.processes.supervisor import PROCESS_CLASSES

    for role, path in PROCESS_CLASSES.items():
        assert child.load_class(path).role == role
