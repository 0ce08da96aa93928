"""Printing benchmark tables and writing their JSON results."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def print_table(title: str, headers: list[str], rows: list[list[Any]]) -> None:
    """A plain aligned text table."""
    cells = [headers, *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        line = [str(c).ljust(w) if n == 0 or i == 0 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(line).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def pass_fail(ok: bool) -> str:
    """The verdict column of a goal row."""
    return "pass" if ok else "FAIL"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_json(name: str, results: dict[str, Any], out: Path | None = None) -> Path:
    """Write results with the machine's description; returns the path."""
    path = out or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "results": results,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults written to {path}")
    return path
