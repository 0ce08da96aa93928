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


TIMELINE_ALWAYS = ("sync", " WARNING ", " ERROR ", "refused", "dropped transaction")


def timeline(root: Path, needle: str) -> str:
    """Every node's log lines that mention `needle`, a sync, a refused or dropped transaction,
    or a warning, merged in time order and tagged with the node: what a failed devnet test
    prints so that a failure on a loaded CI machine can be read afterwards."""
    lines = []
    for log in sorted(root.glob("node*/node.log")):
        for line in log.read_text().splitlines():
            if needle in line or any(word in line for word in TIMELINE_ALWAYS):
                lines.append(f"{line[:23]} {log.parent.name} {line[24:]}")
    return "\n".join(sorted(lines)[-200:])
