"""The import rules of the pure cores: `consensus/` and `ogpu_node/ledger/` are sans-I/O.

Neither imports a network, a database, a clock, global randomness or the operating system: time,
randomness and messages come in as arguments. `consensus/` imports only the standard library and
itself (its simulator, `consensus/sim/`, may also use the clock, randomness and files). The ledger
imports the standard library, itself and the pure project modules it is built on; `cryptography`
only through `ogpu_node.keys`. Checked on each file's own imports, then on everything that
importing both cores loads; the workload specs both the ledger and `gpu/` import
(`ogpu_node/workloads/`) are held to the same rules and import nothing from `gpu/`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FORBIDDEN_EVERYWHERE = frozenset({"trio", "libp2p", "plyvel", "plyvel_next", "socket", "asyncio",
                                  "threading", "subprocess", "select", "selectors", "p2p"})
"""Networks, databases, concurrency: no pure core touches them."""
FORBIDDEN_IN_CORE = frozenset({"time", "random", "datetime", "os", "io", "pathlib", "secrets",
                               "json", "argparse", "sys"})
"""The clock, global randomness, the operating system and files: passed in, never imported."""


@dataclass(frozen=True)
class Rule:
    """What the files of one package may import."""

    package: str
    """The package's own import name (it may import itself)."""
    forbidden: frozenset[str]
    """Top-level modules refused, even from the standard library."""
    project: frozenset[str] = frozenset()
    """Project modules allowed besides the package itself (with their submodules)."""
    exceptions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """File name -> top-level modules allowed in that file only."""

    def violations(self, path: Path) -> list[str]:
        """The imports of `path` this rule refuses."""
        extra = self.exceptions.get(path.name, frozenset())
        return [module for module in sorted(imported_modules(path))
                if not self.allows(module, extra)]

    def allows(self, module: str, extra: frozenset[str]) -> bool:
        top = module.partition(".")[0]
        if top in extra:
            return True
        if top in self.forbidden:
            return False
        if _within(module, {self.package} | self.project):
            return True
        return top in sys.stdlib_module_names or top == "__future__"


def _within(module: str, packages: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


CONSENSUS = Rule("consensus", FORBIDDEN_EVERYWHERE | FORBIDDEN_IN_CORE)
CONSENSUS_SIM = Rule("consensus", FORBIDDEN_EVERYWHERE)
LEDGER = Rule(
    "ogpu_node.ledger", FORBIDDEN_EVERYWHERE | FORBIDDEN_IN_CORE | {"numpy", "cryptography"},
    project=frozenset({"ogpu_node.encoding", "ogpu_node.errors", "ogpu_node.hashing",
                       "ogpu_node.keys", "ogpu_node.types", "ogpu_node.workloads",
                       # equivocation evidence is checked by the consensus checker itself
                       "consensus.errors", "consensus.evidence", "consensus.proposer"}),
    # LtHash adds 1024 16-bit lanes per record; numpy does that arithmetic, nothing else.
    exceptions={"commitment.py": frozenset({"numpy"})})

WORKLOADS = Rule("ogpu_node.workloads", FORBIDDEN_EVERYWHERE | FORBIDDEN_IN_CORE | {"numpy", "gpu"},
                 project=frozenset({"ogpu_node.encoding", "ogpu_node.errors", "ogpu_node.types"}))
"""The specs the ledger and `gpu/` share: as pure as the ledger, and below `gpu/`."""

IMPURE_MODULES = ("trio", "libp2p", "plyvel", "p2p", "socket", "asyncio", "ogpu_node.node",
                  "ogpu_node.storage", "ogpu_node.rpc", "ogpu_node.chain")
"""What importing the pure cores must never load, even through a module they rely on."""


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports by absolute name (`from x import y` counts as `x`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _files(package_dir: str) -> list[Path]:
    files = sorted((REPO / package_dir).rglob("*.py"))
    assert len(files) > 10, package_dir
    return files


def test_consensus_imports_only_the_standard_library_and_itself() -> None:
    for path in _files("consensus"):
        rule = CONSENSUS_SIM if "sim" in path.relative_to(REPO / "consensus").parts else CONSENSUS
        assert rule.violations(path) == [], path


def test_the_ledger_imports_only_the_standard_library_itself_and_pure_modules() -> None:
    for path in _files("ogpu_node/ledger"):
        assert LEDGER.violations(path) == [], path


def test_the_workload_specs_are_pure_and_import_no_gpu_code() -> None:
    files = sorted((REPO / "ogpu_node/workloads").glob("*.py"))
    assert len(files) >= 3
    for path in files:
        assert WORKLOADS.violations(path) == [], path


def test_importing_the_cores_loads_no_network_storage_or_node_code() -> None:
    modules = [".".join(p.relative_to(REPO).with_suffix("").parts)
               for root in ("consensus", "ogpu_node/ledger") for p in _files(root)
               if p.name != "__main__.py"]
    script = ("import importlib, sys\n"
              f"for name in {modules!r}: importlib.import_module(name.removesuffix('.__init__'))\n"
              "print('\\n'.join(sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.split()
    assert [m for m in loaded if _within(m, IMPURE_MODULES)] == []


def test_the_rules_detect_forbidden_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom trio import sleep\nimport numpy as np\n"
                   "from cryptography.exceptions import InvalidSignature\n"
                   "from ogpu_node.node.mempool import Mempool\nfrom ogpu_node import chain\n"
                   "from ogpu_node.hashing import digest\nfrom ogpu_node.ledger.tx import Stake\n"
                   "import hashlib\nfrom consensus.engine import Engine\n")
    assert LEDGER.violations(bad) == ["consensus.engine", "cryptography.exceptions", "numpy",
                                      "ogpu_node", "ogpu_node.node.mempool", "time", "trio"]
    assert CONSENSUS.violations(bad) == [
        "cryptography.exceptions", "numpy", "ogpu_node", "ogpu_node.hashing",
        "ogpu_node.ledger.tx", "ogpu_node.node.mempool", "time", "trio"]
    assert CONSENSUS_SIM.violations(bad) == [
        "cryptography.exceptions", "numpy", "ogpu_node", "ogpu_node.hashing",
        "ogpu_node.ledger.tx", "ogpu_node.node.mempool", "trio"]
    allowed = tmp_path / "commitment.py"  # the one file allowed numpy
    allowed.write_text("import numpy as np\nimport hashlib\n")
    assert LEDGER.violations(allowed) == []


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _project_imports(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports (a `from package import name` of a submodule counts
    as that submodule)."""
    found = set()
    for imported in imported_modules(path):
        name = imported
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


@pytest.mark.parametrize("package", ["gpu", "p2p"])
def test_a_library_builds_on_node_modules_that_never_import_it(package: str) -> None:
    """No import cycle runs through `gpu/` (or `p2p/`) and `ogpu_node/`: what the library imports
    from the node (its foundations: errors, types, hashing, blob ids, the workload specs), and
    everything that imports in turn, never imports the library, directly or lazily inside a
    function. The node's agents, CLI and services use the libraries, not the other way round."""
    paths = {_module_name(p): p for root in ("ogpu_node", package)
             for p in (REPO / root).rglob("*.py")}
    known = set(paths)
    imports = {name: _project_imports(path, known) for name, path in paths.items()}
    frontier = {m for g, found in imports.items() if g.startswith(package) for m in found
                if m.startswith("ogpu_node")}
    reached: set[str] = set()
    while frontier:
        module = frontier.pop()
        reached.add(module)
        frontier |= {m for m in imports[module] if m.startswith("ogpu_node")} - reached
    assert reached, f"{package}/ imports nothing from the node: the test sees no imports"
    assert {m for m in reached if any(i.startswith(package) for i in imports[m])} == set()
    assert not any(m.startswith(("ogpu_node.ledger", "ogpu_node.node", "ogpu_node.agents"))
                   for m in reached), sorted(reached)
