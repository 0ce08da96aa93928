"""The distribution's split: `pip install ogpu-node` (the SDK and `ogpu`) needs only the base
dependencies; the node needs the extra `node`, and `ogpu-node` says so without it."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.sdk.test_surface import BLOCKER

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"ogpu_node", "consensus", "p2p", "gpu", "bench", "tests"}
STARTUP = {"_distutils_hack"}
"""Loaded by a .pth file of the venv's setuptools before any code of ours runs."""


def project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        table: dict[str, object] = tomllib.load(f)["project"]
    return table


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match[0]).lower()


def closure(names: set[str]) -> set[str]:
    """`names` and every distribution they require, extras excluded (markers otherwise
    ignored: an over-approximation is safe here)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # required under a marker this interpreter does not meet
        for requirement in requirements:
            if "extra ==" not in requirement.replace("extra==", "extra =="):
                todo.append(requirement_name(requirement))
    return seen


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_node_dependencies_are_an_extra_not_the_base() -> None:
    base = {requirement_name(r) for r in project()["dependencies"]}  # type: ignore[attr-defined]
    extras: dict[str, list[str]] = project()["optional-dependencies"]  # type: ignore[assignment]
    node = {requirement_name(r) for r in extras["node"]}
    assert {"libp2p", "plyvel", "plyvel-next", "trio", "hypercorn", "prometheus-client", "numba",
            "onnx", "onnxruntime"} <= node
    assert not base & node, f"node dependencies in the base install: {base & node}"


def test_the_sdk_and_the_user_cli_load_only_base_dependencies() -> None:
    """Every third-party module the SDK and `ogpu` load comes from a base dependency (or one
    of theirs); the heavy ones cannot even be imported here."""
    done = run_python(BLOCKER + textwrap.dedent("""
        import json
        import ogpu_node.sdk, ogpu_node.cli.user_cli, gpu.nn.data, gpu.inputs
        tops = {m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names)
        # Modules with no file are parts of extension modules (Cython's runtime, say).
        print(json.dumps(sorted(m for m in tops if getattr(sys.modules[m], "__file__", None))))
    """))
    assert done.returncode == 0, done.stderr
    loaded = {m for m in json.loads(done.stdout)
              if m not in FIRST_PARTY | STARTUP and not m.startswith("__editable__")}
    distributions = importlib.metadata.packages_distributions()
    base = closure({requirement_name(r)
                    for r in project()["dependencies"]})  # type: ignore[attr-defined]
    outside = {module: distributions.get(module) for module in loaded
               if not {requirement_name(d) for d in distributions.get(module, [module])} & base}
    assert not outside, f"modules from outside the base dependencies: {outside}"


def test_ogpu_node_names_the_extra_when_the_node_is_not_installed() -> None:
    done = run_python(BLOCKER + textwrap.dedent("""
        from ogpu_node.cli.node_cli import main
        main(["status"])
    """))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install 'ogpu-node[node]'" in lines[0] and "libp2p" in lines[0]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("OGPU_INSTALL_TEST"),
                    reason="opt-in (OGPU_INSTALL_TEST=1): installs the base into a fresh venv "
                           "from the package index, over the network (minutes on a cold cache)")
def test_a_fresh_base_install_imports_the_sdk(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c",
                    str(ROOT / "scripts" / "constraints.txt"), str(ROOT)],
                   check=True, timeout=600)
    done = subprocess.run([str(python), "-c", "import sys, ogpu_node.sdk, ogpu_node.cli.user_cli;"
                           "import importlib.util as u;"
                           "print([m for m in ('libp2p', 'plyvel', 'numba', 'trio') "
                           "if u.find_spec(m)])"],
                          capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path)
    assert done.stdout.strip() == "[]"
    user_cli = subprocess.run([str(venv / "bin" / "ogpu"), "--help"], capture_output=True,
                              text=True, timeout=60, check=False)
    assert user_cli.returncode == 0 and "transfer" in user_cli.stdout, user_cli.stderr
    node_cli = subprocess.run([str(venv / "bin" / "ogpu-node"), "status"], capture_output=True,
                              text=True, timeout=60, check=False)
    assert node_cli.returncode == 1 and "pip install 'ogpu-node[node]'" in node_cli.stderr
