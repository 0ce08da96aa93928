"""Write rows.npz (1,000 rows for my-model.onnx) and request.npz (its first 100 rows, for a
pool request): one array per model input, named as the input.

    python make_rows.py
"""

import numpy as np

rows = np.random.default_rng(7).normal(size=(1_000, 8)).astype(np.float32)
np.savez("rows.npz", features=rows)
np.savez("request.npz", features=rows[:100])
print("wrote rows.npz", rows.shape, "and request.npz", rows[:100].shape)
