"""Real data sets that ship with the node, for its tests, benchmarks and demo (see README.md).

`digits()` loads the 8 x 8 handwritten digits; `split()` cuts any data set into a training and a
held-out part that every caller reproduces.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

DIGITS_ROWS = 1_797
DIGITS_PIXEL_MAX = 16


@dataclass(frozen=True, slots=True)
class Labelled:
    """Images (float32, N x 1 x 8 x 8, scaled to [0, 1]) and their labels (int64, N)."""

    x: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, rows: npt.NDArray[np.int64]) -> Labelled:
        return Labelled(np.ascontiguousarray(self.x[rows]), np.ascontiguousarray(self.labels[rows]))


def digits() -> Labelled:
    """The 1,797 handwritten digits: x is N x 1 x 8 x 8 (channels first, like PyTorch's
    convolutions), pixels divided by 16."""
    raw = resources.files(__package__).joinpath("digits.csv.gz").read_bytes()
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",",
                       dtype=np.int64)
    if table.shape != (DIGITS_ROWS, 65):
        raise ValueError(f"digits.csv.gz holds {table.shape}, not ({DIGITS_ROWS}, 65)")
    x = (table[:, :64] / DIGITS_PIXEL_MAX).astype(np.float32).reshape(-1, 1, 8, 8)
    return Labelled(x, table[:, 64].copy())


def split(data: Labelled, held_out: float = 0.2, seed: int = 0) -> tuple[Labelled, Labelled]:
    """A training part and a held-out part (`held_out` of the rows), drawn by `seed`: the same
    arguments give the same parts everywhere."""
    order = np.random.default_rng(seed).permutation(len(data))
    cut = len(data) - round(len(data) * held_out)
    return data.take(order[:cut]), data.take(order[cut:])
