"""Bounds of node settings: the check `NodeSettings` and `MempoolLimits` run on themselves."""

from __future__ import annotations

from ogpu_node.errors import OgpuError


class InvalidSettings(OgpuError):
    """A node setting out of its bounds; `owner` is the settings class, `field` its field."""

    def __init__(self, owner: str, field_name: str, message: str) -> None:
        super().__init__(message)
        self.owner = owner
        self.field = field_name


def refuse_below(settings: object, names: list[str]) -> None:
    """Raise `InvalidSettings` for the first of `names` that is not positive on `settings`."""
    for name in names:
        value = getattr(settings, name)
        if not value > 0:
            raise InvalidSettings(type(settings).__name__, name,
                                  f"{name} must be positive, got {value}")
