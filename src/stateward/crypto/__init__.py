"""The barrier: everything below it is ciphertext. Envelope encryption of blobs (``barrier``),
the key ring choosing a key provider per path (``keyring``), the providers, and the keyed
hashing of API tokens (``tokens``)."""

from stateward.crypto.barrier import Barrier, BlobCorrupt, KeyRef
from stateward.crypto.keyring import KeyRing

__all__ = ["Barrier", "BlobCorrupt", "KeyRef", "KeyRing"]
