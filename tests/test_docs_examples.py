"""docs/models.md's examples: the scripts of docs/examples/ run as a reader runs them (in a
folder of their own), the model they build is one the network accepts, the network file is
one the CLI accepts, and the doc shows the very code and TOML that are tested here."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gpu.onnx_models import inspect_model
from ogpu_node.cli.market_cli import TASK_KEYS
from ogpu_node.cli.net_toml import parse_net
from ogpu_node.workloads.models import ElemType, TensorInfo

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
GUIDE = ROOT / "docs" / "models.md"


def run_example(name: str, cwd: Path, *args: str) -> str:
    """Run docs/examples/`name` in `cwd` with this interpreter and this checkout's packages."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def code_of(name: str) -> str:
    """An example script without its module docstring: what the guide shows."""
    text = (EXAMPLES / name).read_text()
    return text.split('"""', 2)[2].lstrip("\n")


def test_the_guide_shows_the_tested_scripts_and_network() -> None:
    guide = GUIDE.read_text()
    for name in ("make_model.py", "show_info.py", "make_rows.py", "check_result.py",
                 "make_digits.py", "check_digits.py"):
        assert f"```python\n{code_of(name)}```" in guide, name
    assert f"```toml\n{(EXAMPLES / 'digits-cnn.toml').read_text()}```" in guide


def test_the_example_model_is_accepted_and_answers_the_example_rows(tmp_path: Path) -> None:
    assert run_example("make_model.py", tmp_path) == "wrote my-model.onnx\n"
    info = inspect_model((tmp_path / "my-model.onnx").read_bytes())
    assert info.inputs == (TensorInfo("features", ElemType.FLOAT, (8,)),)
    assert info.outputs == (TensorInfo("scores", ElemType.FLOAT, (3,)),
                            TensorInfo("probs", ElemType.FLOAT, (3,)))
    assert (info.opset, info.flops_per_row, info.work_units(1_000)) == (17, 786, 1)
    assert "flops_per_row=786" in run_example("show_info.py", tmp_path)

    run_example("make_rows.py", tmp_path)
    with np.load(tmp_path / "rows.npz") as rows, np.load(tmp_path / "request.npz") as request:
        assert rows["features"].shape == (1_000, 8) and rows["features"].dtype == np.float32
        assert np.array_equal(request["features"], rows["features"][:100])
        features = rows["features"]
    # a provider's answer, as `ogpu task result -o out.npz` writes it
    session = ort.InferenceSession(str(tmp_path / "my-model.onnx"),
                                   providers=["CPUExecutionProvider"])
    scores, probs = session.run(["scores", "probs"], {"features": features})
    np.savez(tmp_path / "out.npz", scores=scores, probs=probs)
    out = run_example("check_result.py", tmp_path)
    assert "largest difference from a local run: 0.0\nrows sum to 1: True" in out, out
    np.savez(tmp_path / "answer.npz", scores=scores[:100] + 1, probs=probs[:100])
    out = run_example("check_result.py", tmp_path, "answer.npz")
    assert "(100, 3)" in out and "largest difference from a local run: 1.0" in out, out


def test_the_digits_example_trains_with_the_documented_network(tmp_path: Path) -> None:
    out = run_example("make_digits.py", tmp_path)
    assert out == ("wrote digits.npz (1438 images), test-x.npz and test-labels.npy (359)\n")
    with np.load(tmp_path / "digits.npz") as data, np.load(tmp_path / "test-x.npz") as test:
        assert data["x"].shape == (1_438, 1, 8, 8) and sorted(data.files) == ["labels", "x"]
        assert test.files == ["x"] and test["x"].shape == (359, 1, 8, 8)
        rows = data["x"].shape[0]
    labels = np.load(tmp_path / "test-labels.npy")
    logits = np.eye(10, dtype=np.float32)[labels]
    logits[0] = np.roll(logits[0], 1)  # one wrong answer
    np.savez(tmp_path / "digits-answer.npz", logits=logits)
    assert run_example("check_digits.py", tmp_path) == (
        "358 of 359 held-out digits right (99.72%)\n")

    fields = tomllib.loads((EXAMPLES / "digits-cnn.toml").read_text())
    terms = {k: fields.pop(k) for k in TASK_KEYS if k in fields}
    assert terms == {"max_price": "0.01", "exec_s": 120}
    spec = parse_net(fields, rows, bytes(32))
    assert spec.problems() == [] and spec.output_shape == (10,)
    assert (spec.val_bps, spec.steps, spec.checkpoint_every) == (1_500, 1_500, 100)
