"""How many of the held-out digits the trained model got right, from a pool's answer.

    python check_digits.py [answer.npz]
"""

import sys

import numpy as np

logits = np.load(sys.argv[1] if len(sys.argv) > 1 else "digits-answer.npz")["logits"]
labels = np.load("test-labels.npy")
right = int((logits.argmax(axis=1) == labels).sum())
print(f"{right} of {len(labels)} held-out digits right ({100 * right / len(labels):.2f}%)")
