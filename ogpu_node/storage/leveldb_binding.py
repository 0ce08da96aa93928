"""`plyvel`, the LevelDB binding, from whichever distribution pyproject.toml installs.

plyvel 1.5.1, the last release, publishes no wheel for Python 3.13, and its source build needs
LevelDB's headers. From 3.13 on the project installs plyvel-next instead: a fork of plyvel with
wheels for 3.12 to 3.14 (LevelDB 1.23 and Snappy inside), the same API under the package name
`plyvel_next`. This test and the environment markers in pyproject.toml must agree.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 13):
    import plyvel_next as plyvel
else:
    import plyvel

__all__ = ["plyvel"]
