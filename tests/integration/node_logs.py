"""A check every devnet test ends with: no traceback passed through our code in any node log
(py-libp2p logs its own shutdown races, which are not ours)."""

from __future__ import annotations

import re
from pathlib import Path

OUR_FRAME = re.compile(r'File ".*/(ogpu_node|p2p|consensus|gpu)/[^"]+", line')


def assert_no_traceback_through_our_code(root: Path) -> None:
    for log in root.glob("node*/node.log"):
        text = log.read_text()
        ours = OUR_FRAME.search(text)
        assert ours is None, f"{log}:\n{text[max(0, ours.start() - 2000):ours.end() + 2000]}"
