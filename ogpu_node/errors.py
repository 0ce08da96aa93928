"""The root of every error the node raises on purpose.

Each package defines its own subclasses; a handler that catches `OgpuError` catches every
rejection the node makes and nothing else, so an unexpected `KeyError` or `TypeError` is never
mistaken for bad input.
"""

from __future__ import annotations


class OgpuError(Exception):
    """Base of all typed errors of ogpu-node."""


class DecodeError(OgpuError):
    """Bytes that are not a valid canonical encoding of the expected object."""


class EncodeError(OgpuError):
    """A value that cannot be canonically encoded (wrong type, out of range, too large)."""


class AddressError(OgpuError):
    """A text address that does not parse or whose checksum does not match."""


class KeyFileError(OgpuError):
    """A key file that is missing, unreadable, malformed or has unsafe permissions."""


class SignatureError(OgpuError):
    """A signature that does not verify, or a public key that is not a valid Ed25519 point."""
