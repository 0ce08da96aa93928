"""Write the 8x8 handwritten digits that ship with ogpu-node as training data and a held-out
test set: digits.npz ("x": 1,438 images of 1x8x8, "labels": their digits) to train on, and
test-x.npz ("x": 359 other images) with test-labels.npy, to ask the trained model about.

    python make_digits.py
"""

import numpy as np

from ogpu_node.datasets import digits, split

train, test = split(digits(), held_out=0.2, seed=0)
np.savez("digits.npz", x=train.x, labels=train.labels)
np.savez("test-x.npz", x=test.x)
np.save("test-labels.npy", test.labels)
print(f"wrote digits.npz ({len(train)} images), test-x.npz and test-labels.npy ({len(test)})")
