"""Containing what should never happen: an unexpected exception in one node service.

Every input a node handles is checked and refused with a typed error, but a bug reached by some
input must not end the node's nursery (and with it the node): `contained(where)` logs the
exception with its traceback, counts it by service in `CONTAINED` (exported as
`ogpu_node_contained_errors_total{service=...}`), and lets the service go on with its next
input. Cancellation (a `BaseException`) passes through, and so do typed rejections when the
caller handles them itself first.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("ogpu.node")

CONTAINED: Counter[str] = Counter()
"""Unexpected exceptions contained so far, by service (one process, one node)."""


@contextmanager
def contained(where: str) -> Iterator[None]:
    """Run a block of service `where`; an unexpected exception is logged, counted and ends the
    block only."""
    try:
        yield
    except Exception:
        CONTAINED[where] += 1
        log.exception("unexpected error in %s (contained; the node goes on)", where)
