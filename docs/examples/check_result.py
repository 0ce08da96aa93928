"""Check out.npz (a task's or a pool's answer) against my-model.onnx run here on rows.npz.

    python check_result.py [out.npz]
"""

import sys

import numpy as np
import onnxruntime as ort

path = sys.argv[1] if len(sys.argv) > 1 else "out.npz"
rows = np.load("rows.npz")["features"]
out = np.load(path)
n = len(out["probs"])  # a pool request may carry fewer rows than rows.npz
session = ort.InferenceSession("my-model.onnx", providers=["CPUExecutionProvider"])
scores, probs = session.run(["scores", "probs"], {"features": rows[:n]})
print("arrays:", {name: out[name].shape for name in out.files})
print("largest difference from a local run:", float(np.abs(out["scores"] - scores).max()))
print("rows sum to 1:", bool(np.allclose(out["probs"].sum(axis=1), 1, atol=1e-5)))
print("classes of the first 10 rows:", out["probs"][:10].argmax(axis=1).tolist())
