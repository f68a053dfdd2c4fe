"""Encryption at rest of secret values (what a Secret record stores in etcd).

AES-256-GCM with a key the managers hold (never in etcd). The record's id goes in as
associated data, so a sealed value copied onto another secret's record does not open. A box
carries the id of the key that sealed it, so keys rotate without a flag day: `rotate` makes a
new key current, old keys keep opening what they sealed, and `reseal` re-encrypts a value
under the current key; once nothing is sealed with an old key, `retire` drops it.

Sealed format (bytes): b"orch-sb1:" + key id (8 bytes) + nonce (12 bytes) + ciphertext and tag.
A 96-bit random nonce per value is safe for far more than 2^32 values per key, which
rotation keeps us under.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orch.errors import InvalidArgument, NotFound, PermissionDenied

MAGIC = b"orch-sb1:"
KEY_ID_LEN = 8
NONCE_LEN = 12
KEY_LEN = 32


@dataclass
class Keyring:
    """The managers' keys: `current` seals, every key opens what it sealed."""

    keys: dict[bytes, bytes] = field(default_factory=dict)
    current: bytes = b""

    @classmethod
    def generate(cls) -> Keyring:
        ring = cls()
        ring.rotate()
        return ring

    def rotate(self) -> bytes:
        """Make a new current key; returns its id. Old keys stay to open old values."""
        key_id = os.urandom(KEY_ID_LEN)
        self.keys[key_id] = AESGCM.generate_key(bit_length=KEY_LEN * 8)
        self.current = key_id
        return key_id

    def retire(self, key_id: bytes) -> None:
        if key_id == self.current:
            raise InvalidArgument("cannot retire the current secret key: rotate first")
        self.keys.pop(key_id, None)

    def seal(self, plaintext: bytes, *, record_id: str) -> bytes:
        if not self.current:
            raise InvalidArgument("secret keyring has no key: generate or load one first")
        nonce = os.urandom(NONCE_LEN)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext, record_id.encode())
        return MAGIC + self.current + nonce + sealed

    def key_of(self, box: bytes) -> bytes:
        """The id of the key that sealed `box`."""
        if not box.startswith(MAGIC) or len(box) < len(MAGIC) + KEY_ID_LEN + NONCE_LEN + 16:
            raise InvalidArgument("secret value is not an orch sealed box (orch-sb1)")
        return box[len(MAGIC):len(MAGIC) + KEY_ID_LEN]

    def open(self, box: bytes, *, record_id: str) -> bytes:
        key_id = self.key_of(box)
        key = self.keys.get(key_id)
        if key is None:
            raise NotFound(f"secret {record_id} is sealed with key {key_id.hex()}, which this manager does not hold; "
                           f"copy the cluster's secret keyring from another manager")
        start = len(MAGIC) + KEY_ID_LEN
        nonce, sealed = box[start:start + NONCE_LEN], box[start + NONCE_LEN:]
        try:
            return AESGCM(key).decrypt(nonce, sealed, record_id.encode())
        except InvalidTag:
            raise PermissionDenied(f"secret {record_id} does not decrypt: its value was altered or belongs to another secret") from None

    def reseal(self, box: bytes, *, record_id: str) -> bytes:
        """The same value sealed with the current key (unchanged if it already is)."""
        if self.key_of(box) == self.current:
            return box
        return self.seal(self.open(box, record_id=record_id), record_id=record_id)

    # The managers keep the keyring in a file of their own (mode 0600), never in etcd.
    def to_json(self) -> str:
        return json.dumps({"version": 1, "current": self.current.hex(),
                           "keys": {k.hex(): base64.b64encode(v).decode() for k, v in self.keys.items()}})

    @classmethod
    def from_json(cls, text: str) -> Keyring:
        try:
            data = json.loads(text)
            keys = {bytes.fromhex(k): base64.b64decode(v, validate=True) for k, v in data["keys"].items()}
            current = bytes.fromhex(data["current"])
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise InvalidArgument(f"secret keyring is not valid: {err}") from None
        if data.get("version") != 1 or current not in keys or any(len(k) != KEY_ID_LEN or len(v) != KEY_LEN for k, v in keys.items()):
            raise InvalidArgument("secret keyring is not valid: unknown version, or a key of the wrong size")
        return cls(keys, current)
