"""The import rule: consensus/ is sans-I/O and standard-library only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "consensus"
FORBIDDEN_EVERYWHERE = {"trio", "libp2p", "plyvel", "socket", "asyncio", "ogpu_node", "p2p",
                        "gpu", "threading", "subprocess", "select", "selectors"}
FORBIDDEN_IN_CORE = {"time", "random", "datetime", "os", "io", "pathlib", "secrets", "json",
                     "argparse", "sys"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_consensus_imports_only_the_standard_library_and_itself() -> None:
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        in_sim = "sim" in path.relative_to(ROOT).parts
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top in sys.stdlib_module_names or top in {"consensus", "__future__"}, (
                f"{path}: imports {module}")
            assert top not in FORBIDDEN_EVERYWHERE, f"{path}: imports {module}"
            if not in_sim:
                assert top not in FORBIDDEN_IN_CORE, f"{path}: imports {module}"


def test_the_rule_detects_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom trio import sleep\n")
    assert {"time", "trio"} <= imported_modules(bad)
