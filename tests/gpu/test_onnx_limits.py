"""The memory count of a registered model's run (`workloads.limits`, kind 4) against the peak
RSS growth of real runs, each in a fresh process (see `tests/gpu/onnx_peak.py`)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from ogpu_node.workloads.limits import MIB, memory_needed_bytes
from tests.gpu.onnx_examples import EXAMPLES, Example, mlp
from tests.gpu.onnx_tasks import task_for

UNMODELLED_BYTES = 4 * MIB
"""Python's and the runtime's small allocations during a run (lists, views, per-run state)."""
REPO = Path(__file__).resolve().parents[2]

MEASURED: dict[str, tuple[Example, int, float]] = {
    # name: model, batch, the least share of the count the peak must reach (a count, not a
    # guess far above; intermediate tensors are counted all at once, the runtime reuses them)
    "cnn_by_its_inputs": (EXAMPLES["digits_cnn"](), 30_000, 0.7),
    "mlp_by_its_weights": (mlp(hidden=2**16), 16, 0.8),
    "transformer_by_its_activations": (EXAMPLES["transformer"](), 1_024, 0.25),
}


def peak_rss_growth(tmp_path: Path, example: Example, batch: int) -> tuple[int, int]:
    task = task_for(example, batch)
    (tmp_path / "spec").write_bytes(pickle.dumps(task.spec))
    (tmp_path / "model").write_bytes(task.model)
    (tmp_path / "inputs").write_bytes(task.inputs)
    done = subprocess.run([sys.executable, "-m", "tests.gpu.onnx_peak", str(tmp_path / "spec"),
                           str(tmp_path / "model"), str(tmp_path / "inputs")],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    return int(done.stdout.split()[-1]), memory_needed_bytes(task.spec)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's procfs")
@pytest.mark.parametrize("name", MEASURED)
def test_the_memory_count_bounds_the_measured_peak(tmp_path: Path, name: str) -> None:
    example, batch, least = MEASURED[name]
    peak, counted = peak_rss_growth(tmp_path, example, batch)
    assert peak <= counted + UNMODELLED_BYTES, (peak, counted)
    assert peak >= least * counted, (peak, counted)
