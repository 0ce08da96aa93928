"""The typed errors of `gpu/`: every rejection the package makes is a `GpuError`."""

from __future__ import annotations

from ogpu_node.errors import OgpuError


class GpuError(OgpuError):
    """Base of the errors raised on purpose by `gpu/`."""


class DeviceError(GpuError):
    """A device that was asked for (`OGPU_DEVICE=cuda`) but cannot be used."""


class ArtifactError(GpuError):
    """Artifact bytes that are malformed, too large, or arrays that cannot be encoded."""


class WorkloadError(GpuError):
    """A workload this machine refuses to run (a limit of `gpu/` beyond the spec's own)."""


class WorkloadCancelled(GpuError):
    """`should_stop()` returned true while a workload ran."""


class CheckpointsNeeded(GpuError):
    """A training check was not given a committed checkpoint it needs: an interval whose replay
    did not reproduce it bit for bit must be compared with it. Fetch it and check again."""
