"""`python -m tests.gpu.onnx_peak SPEC MODEL INPUTS`: the peak RSS growth, in bytes, of one
registered model's run in this fresh process (printed), as a provider's worker runs it: the
runtime loaded and warmed on another model first, then the model file and the inputs read and
the workload run with a sink taking the output. RSS, not `tracemalloc`: ONNX Runtime allocates
outside Python."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from gpu.device import cpu_device
from gpu.onnx_models import inspect_model
from gpu.onnx_run import clear_sessions, load_model
from gpu.workloads import run_workload
from tests.gpu.onnx_examples import mlp


def status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def main(spec_path: str, model_path: str, inputs_path: str) -> None:
    spec = pickle.loads(Path(spec_path).read_bytes())
    warm = mlp()
    load_model(warm.model, inspect_model(warm.model))
    clear_sessions()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from the current RSS
    base = status_bytes("VmRSS")
    model, inputs = Path(model_path).read_bytes(), Path(inputs_path).read_bytes()
    run_workload(spec, cpu_device(), inputs=inputs, model=model, sink=lambda raw: None)
    print(status_bytes("VmHWM") - base)


if __name__ == "__main__":
    main(*sys.argv[1:4])
