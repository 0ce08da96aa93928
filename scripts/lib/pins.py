"""The pin lists of scripts/lock and scripts/lib/bootstrap.sh ("name==version" lines).

    python scripts/lib/pins.py merge PINS FREEZE...   add each pip freeze to PINS, one version
                                                      per name, sorted (exit 1 on a conflict)
    pip freeze | python scripts/lib/pins.py unpinned CONSTRAINTS
                                                      print the installed names CONSTRAINTS lacks
Names are compared as PEP 503 normalises them (Hypercorn, hypercorn and hyper_corn are one).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

PIN = re.compile(r"([A-Za-z0-9._-]+)==(\S+)")


def normalise(name: str) -> str:
    """The PEP 503 form of a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(lines: Iterable[str], source: str) -> dict[str, str]:
    """name -> version of every "name==version" line; comments and blank lines are skipped."""
    pins: dict[str, str] = {}
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.fullmatch(line)
        if match is None:
            sys.exit(f"{source}: not a name==version pin: {line!r}")
        pins[normalise(match[1])] = match[2]
    return pins


def merge(pins_path: str, freeze_paths: list[str]) -> None:
    """Rewrite `pins_path` with the pins of every freeze added; one version per name."""
    with open(pins_path) as f:
        pins = read_pins(f, pins_path)
    for path in freeze_paths:
        with open(path) as f:
            for name, version in read_pins(f, path).items():
                if pins.setdefault(name, version) != version:
                    sys.exit(f"{path}: {name}=={version}, but {name}=={pins[name]} elsewhere")
    with open(pins_path, "w") as f:
        f.writelines(f"{name}=={pins[name]}\n" for name in sorted(pins))


def unpinned(constraints_path: str) -> None:
    """Print the names in the pip freeze on stdin that `constraints_path` does not pin."""
    with open(constraints_path) as f:
        pinned = read_pins(f, constraints_path)
    installed = read_pins(sys.stdin, "pip freeze")
    print(" ".join(name for name in installed if name not in pinned))


if __name__ == "__main__":
    command, *args = sys.argv[1:] or ["help"]
    if command == "merge" and len(args) >= 2:
        merge(args[0], args[1:])
    elif command == "unpinned" and len(args) == 1:
        unpinned(args[0])
    else:
        sys.exit(__doc__)
