"""scripts/lib/pins.py: how scripts/lock merges each Python's pins and how bootstrap finds an
installed package that scripts/constraints.txt does not pin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "scripts" / "lib" / "pins.py"
CONSTRAINTS = ROOT / "scripts" / "constraints.txt"


def run_pins(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PINS), *args], input=stdin, capture_output=True,
                          text=True, check=False)


def test_merge_adds_each_freeze_normalised_and_sorted(tmp_path: Path) -> None:
    pins = tmp_path / "pins"
    pins.write_text("numpy==2.4.6\n")
    freeze = tmp_path / "freeze"
    freeze.write_text("# a comment\nPyNaCl==1.6.2\nnumpy==2.4.6\ntomli_w==1.2.0\n\n")
    assert run_pins("merge", str(pins), str(freeze)).returncode == 0
    assert pins.read_text() == "numpy==2.4.6\npynacl==1.6.2\ntomli-w==1.2.0\n"


def test_merge_refuses_two_versions_of_one_package(tmp_path: Path) -> None:
    pins = tmp_path / "pins"
    pins.write_text("numpy==2.4.6\n")
    freeze = tmp_path / "freeze"
    freeze.write_text("NumPy==2.5.5\n")
    result = run_pins("merge", str(pins), str(freeze))
    assert result.returncode == 1 and "numpy==2.5.5" in result.stderr
    assert pins.read_text() == "numpy==2.4.6\n"


@pytest.mark.parametrize("line", ["numpy>=2", "numpy @ file:///wheels/numpy.whl", "-e ."])
def test_a_line_that_is_not_a_pin_is_refused(tmp_path: Path, line: str) -> None:
    pins = tmp_path / "pins"
    pins.write_text("")
    freeze = tmp_path / "freeze"
    freeze.write_text(line + "\n")
    result = run_pins("merge", str(pins), str(freeze))
    assert result.returncode == 1 and "not a name==version pin" in result.stderr


def test_unpinned_names_what_the_constraints_lack() -> None:
    result = run_pins("unpinned", str(CONSTRAINTS),
                      stdin="Hypercorn==0.18.0\nnumpy==2.4.6\nnew_dep==1.0\n")
    assert result.returncode == 0 and result.stdout.split() == ["new-dep"]


def test_the_constraints_were_checked_on_every_supported_python() -> None:
    text = CONSTRAINTS.read_text()
    assert "\n# checked on: 3.11 3.12 3.13\n" in text
    names = {line.split("==")[0] for line in text.splitlines() if "==" in line}
    assert {"numpy", "plyvel", "plyvel-next", "libp2p", "pip"} <= names
