"""Secrets sealed at rest: AES-GCM bound to the record id, with key rotation."""

from __future__ import annotations

import pytest

from orch.cluster.secretbox import Keyring
from orch.errors import InvalidArgument, NotFound, PermissionDenied


def test_seal_and_open():
    ring = Keyring.generate()
    box = ring.seal(b"s3cret", record_id="sec1")
    assert b"s3cret" not in box and ring.open(box, record_id="sec1") == b"s3cret"
    assert ring.seal(b"s3cret", record_id="sec1") != box  # a fresh nonce each time


def test_a_box_moved_to_another_record_or_altered_does_not_open():
    ring = Keyring.generate()
    box = ring.seal(b"s3cret", record_id="sec1")
    with pytest.raises(PermissionDenied, match="secret sec2 does not decrypt"):
        ring.open(box, record_id="sec2")
    altered = box[:-1] + bytes([box[-1] ^ 1])
    with pytest.raises(PermissionDenied):
        ring.open(altered, record_id="sec1")
    with pytest.raises(InvalidArgument, match="not an orch sealed box"):
        ring.open(b"plain", record_id="sec1")


def test_rotation_keeps_old_values_readable_and_reseal_moves_them():
    ring = Keyring.generate()
    old_key = ring.current
    box = ring.seal(b"v1", record_id="s")
    new_key = ring.rotate()
    assert new_key != old_key and ring.key_of(box) == old_key
    assert ring.open(box, record_id="s") == b"v1"
    moved = ring.reseal(box, record_id="s")
    assert ring.key_of(moved) == new_key and ring.open(moved, record_id="s") == b"v1"
    assert ring.reseal(moved, record_id="s") is moved
    ring.retire(old_key)
    with pytest.raises(NotFound, match="sealed with key .* which this manager does not hold"):
        ring.open(box, record_id="s")
    with pytest.raises(InvalidArgument, match="cannot retire the current"):
        ring.retire(new_key)


def test_the_keyring_round_trips_and_refuses_garbage():
    ring = Keyring.generate()
    ring.rotate()
    box = ring.seal(b"x", record_id="s")
    again = Keyring.from_json(ring.to_json())
    assert again.current == ring.current and again.open(box, record_id="s") == b"x"
    for bad in ("{}", "not json", '{"version": 1, "current": "00", "keys": {}}'):
        with pytest.raises(InvalidArgument, match="secret keyring is not valid"):
            Keyring.from_json(bad)
