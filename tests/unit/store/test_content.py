"""The content store: blobs are verified, then published atomically, never seen half-written."""

import hashlib
import io

import pytest

from orch.errors import InvalidArgument, NotFound
from orch.node.runtime.content import ContentStore, check_digest


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_write_then_read(tmp_path):
    store = ContentStore(tmp_path)
    d = store.write_bytes(b"hello")
    assert d == digest(b"hello")
    assert store.has(d) and store.read_bytes(d) == b"hello" and store.size(d) == 5
    assert list(store.list()) == [d]


def test_content_is_invisible_until_committed(tmp_path):
    store = ContentStore(tmp_path)
    with store.writer() as w:
        w.write(b"part")
        assert not store.has(digest(b"part"))
        assert list(store.list()) == []
        w.commit()
    assert store.has(digest(b"part"))


def test_a_digest_mismatch_keeps_nothing(tmp_path):
    store = ContentStore(tmp_path)
    with pytest.raises(InvalidArgument, match="content digest mismatch"):
        store.ingest(io.BytesIO(b"evil"), expected=digest(b"good"))
    assert list(store.list()) == [] and list(store.ingest_dir.iterdir()) == []


def test_an_abandoned_writer_leaves_no_temporary_file(tmp_path):
    store = ContentStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.writer() as w:
            w.write(b"x")
            raise RuntimeError("crash")
    assert list(store.ingest_dir.iterdir()) == []


def test_committing_the_same_content_twice_is_harmless(tmp_path):
    store = ContentStore(tmp_path)
    assert store.write_bytes(b"same") == store.write_bytes(b"same")
    assert len(list(store.list())) == 1


def test_missing_and_malformed_digests(tmp_path):
    store = ContentStore(tmp_path)
    with pytest.raises(NotFound, match="no such blob"):
        store.read_bytes(digest(b"nothing"))
    for bad in ("md5:abc", "sha256:XYZ", "sha256:" + "a" * 63, "../../etc/passwd"):
        with pytest.raises(InvalidArgument, match="invalid digest"):
            check_digest(bad)
