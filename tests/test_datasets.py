"""The shipped digits data set: what it holds and how it is split."""

from __future__ import annotations

import numpy as np

from ogpu_node.datasets import DIGITS_ROWS, Labelled, digits, split


def test_the_digits_are_ten_balanced_classes_of_8x8_images_in_0_to_1() -> None:
    data = digits()
    assert data.x.shape == (DIGITS_ROWS, 1, 8, 8) and data.x.dtype == np.float32
    assert data.labels.dtype == np.int64
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    counts = np.bincount(data.labels, minlength=10)
    assert counts.shape == (10,) and counts.min() >= 170 and counts.max() <= 190


def test_a_split_is_reproducible_disjoint_and_complete() -> None:
    data = digits()
    train, test = split(data, held_out=0.25, seed=3)
    again, _ = split(data, held_out=0.25, seed=3)
    other, _ = split(data, held_out=0.25, seed=4)
    assert len(train) + len(test) == DIGITS_ROWS and len(test) == round(DIGITS_ROWS * 0.25)
    assert np.array_equal(train.x, again.x) and not np.array_equal(train.x, other.x)

    def rows(part: Labelled) -> list[bytes]:
        return sorted(x.tobytes() + bytes([int(y)]) for x, y in zip(part.x, part.labels,
                                                                    strict=True))

    assert sorted(rows(train) + rows(test)) == rows(data)
