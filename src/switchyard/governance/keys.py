"""Virtual keys: their format, the keyed hash that is all the store keeps of them, and the server secrets.

A key is ``sk-sy-`` followed by 43 random URL-safe characters (256 bits). The store keeps
``HMAC-SHA256(key_secret, key)`` as hex, and the key's first characters for display (``sk-sy-AbCd…``). Without the
key secret, a copy of the database lets nobody test guesses offline.

Secrets come from the config, else the environment, else are derived from the master key (so that a gateway with
only a master key works out of the box; rotating the master key then invalidates every virtual key, so production
deployments set ``governance.key_secret`` or ``SWITCHYARD_KEY_SECRET``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping

from ..config import Config

KEY_PREFIX = "sk-sy-"
DISPLAY_CHARS = len(KEY_PREFIX) + 4  # what listings show of a key: "sk-sy-AbCd…"
KEY_SECRET_ENV = "SWITCHYARD_KEY_SECRET"
AUDIT_KEY_ENV = "SWITCHYARD_AUDIT_KEY"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def display_prefix(key: str) -> str:
    return key[:DISPLAY_CHARS]


def looks_like_virtual_key(key: str) -> bool:
    return key.startswith(KEY_PREFIX) and len(key) > DISPLAY_CHARS


def new_id(kind: str) -> str:
    """A random, non-secret id: ``org_3f…``, ``vk_9a…``."""
    return f"{kind}_{secrets.token_hex(10)}"


class KeyHasher:
    """The keyed hash of a key. Holds the secret; never logs or shows it."""

    __slots__ = ("_keyed",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the key secret must be at least 16 bytes")
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)  # keyed once; each hash starts from a copy

    def __repr__(self) -> str:
        return "KeyHasher(<secret>)"

    def hash(self, key: str) -> str:
        # A copy of the keyed state: a third faster than hmac.digest(), which also sets the digest up anew and
        # lets go of the GIL around every call (inviting a batch thread in, mid-request).
        mac = self._keyed.copy()
        mac.update(key.encode())
        return mac.hexdigest()


def _derive(root: bytes, label: str) -> bytes:
    return hmac.new(root, f"switchyard/{label}/v1".encode(), hashlib.sha256).digest()


def key_secret(config: Config, env: Mapping[str, str] | None = None) -> bytes | None:
    """The secret that keys virtual-key hashes: config, else ``$SWITCHYARD_KEY_SECRET``, else from the master
    key; None when there is none of them (virtual keys are then unavailable)."""
    env = os.environ if env is None else env
    if config.governance.key_secret:
        return config.governance.key_secret.encode()
    value = env.get(KEY_SECRET_ENV)
    if value:
        if len(value) < 16:
            raise ValueError(f"{KEY_SECRET_ENV} must be at least 16 characters long")
        return value.encode()
    if config.master_key:
        return _derive(config.master_key.encode(), "key-secret")
    return None


def audit_key(config: Config, env: Mapping[str, str] | None = None) -> bytes | None:
    """The HMAC key that signs audit checkpoints: config, else ``$SWITCHYARD_AUDIT_KEY``, else derived from
    the key secret."""
    env = os.environ if env is None else env
    if config.governance.audit.hmac_key:
        return config.governance.audit.hmac_key.encode()
    value = env.get(AUDIT_KEY_ENV)
    if value:
        if len(value) < 16:
            raise ValueError(f"{AUDIT_KEY_ENV} must be at least 16 characters long")
        return value.encode()
    root = key_secret(config, env)
    return _derive(root, "audit-key") if root is not None else None
