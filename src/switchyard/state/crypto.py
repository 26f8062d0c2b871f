"""Content at rest: JSON, sealed with AES-GCM when ``state.encryption_key`` is set.

A sealed value is ``b"\\x01" + nonce (12 bytes) + ciphertext``; its associated data names the conversation and the
column, so a sealed value moved to another conversation or column does not open. The key is the SHA-256 of the
configured secret (give at least 32 random characters). A value stored before a key was configured (plain JSON)
still reads; a sealed value read without the key is an error, never garbage.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import orjson

_SEALED = b"\x01"


class SealedWithoutKey(Exception):
    """Stored content is encrypted and no ``state.encryption_key`` is configured."""


class Sealer:
    __slots__ = ("_aead",)

    def __init__(self, secret: str | None) -> None:
        self._aead: Any = None
        if secret:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(hashlib.sha256(secret.encode()).digest())

    @property
    def encrypting(self) -> bool:
        return self._aead is not None

    def seal(self, value: Any, aad: bytes) -> bytes:
        data = orjson.dumps(value)
        if self._aead is None:
            return data
        nonce = os.urandom(12)
        sealed: bytes = self._aead.encrypt(nonce, data, aad)
        return _SEALED + nonce + sealed

    def open(self, blob: bytes | None, aad: bytes) -> Any:
        if blob is None:
            return None
        if not isinstance(blob, bytes):  # a driver's memoryview
            blob = bytes(blob)
        if blob[:1] == _SEALED:
            if self._aead is None:
                raise SealedWithoutKey("stored conversation content is encrypted; configure state.encryption_key")
            return orjson.loads(self._aead.decrypt(blob[1:13], blob[13:], aad))
        return orjson.loads(blob)
