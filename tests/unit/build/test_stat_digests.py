"""The stat-keyed digest cache: a file whose stat did not change is not read again; any
change that could hide behind an unchanged size and mtime is caught by ctime; a file that
changed just before it was hashed is not remembered (it could change again unseen)."""

import os

import pytest

from orch.build import cache
from orch.build.cache import StatDigests, file_digest

OLD = 1_000_000_000  # a second long past: files written "now" are racy, these are not


@pytest.fixture
def reads(monkeypatch):
    """The paths file_digest read, in order."""
    seen: list[str] = []
    real = cache.file_digest

    def counting(path):
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr(cache, "file_digest", counting)
    return seen


def settled(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def later(root, context, **kw) -> StatDigests:
    """A new build's view, long enough after the files were written that none is racy."""
    now = max(os.stat(p).st_ctime for p in context.iterdir()) + cache.RACY_SECONDS + 1
    return StatDigests(root, context, now=now, **kw)


def test_an_unchanged_file_is_not_read_again(tmp_path, reads):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    a = settled(ctx / "a", "hello\n")
    first = later(tmp_path, ctx)
    assert first.digest(a, os.lstat(a)) == file_digest(a)
    first.save()
    second = later(tmp_path, ctx)
    assert second.digest(a, os.lstat(a)) == file_digest(a)
    assert reads == [a]  # only the first build read it
    mtime = (tmp_path / "build-stat").stat().st_mtime_ns
    second.save()  # nothing changed: nothing written
    assert (tmp_path / "build-stat").stat().st_mtime_ns == mtime


def test_a_change_behind_the_same_size_and_mtime_is_seen(tmp_path, reads):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    a = settled(ctx / "a", "hello\n")
    os.utime(a, (OLD, OLD))
    st = os.lstat(a)
    d = later(tmp_path, ctx)
    d.digest(a, st)
    d.save()
    # Same length, mtime put back: only ctime (which no one can set) tells.
    (ctx / "a").write_text("HELLO\n")
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = later(tmp_path, ctx)
    assert again.digest(a, os.lstat(a)) == file_digest(a) != d.seen[a][-1]
    assert reads == [a, a]


def test_a_file_replaced_by_another_inode_is_read(tmp_path, reads):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    a = settled(ctx / "a", "one\n")
    d = later(tmp_path, ctx)
    d.digest(a, os.lstat(a))
    d.save()
    settled(ctx / "b", "two\n")
    os.replace(ctx / "b", a)
    assert later(tmp_path, ctx).digest(a, os.lstat(a)) == file_digest(a)
    assert reads == [a, a]


def test_a_racy_file_is_hashed_but_not_remembered(tmp_path, reads):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    a = settled(ctx / "a", "fresh\n")
    now = os.stat(a).st_ctime  # hashed in the same instant it was written
    d = StatDigests(tmp_path, ctx, now=now)
    assert d.digest(a, os.lstat(a)) == file_digest(a)
    d.save()
    StatDigests(tmp_path, ctx, now=now).digest(a, os.lstat(a))
    assert reads == [a, a]


def test_each_context_keeps_the_entries_of_its_last_build(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    a, b = settled(ctx / "a", "a\n"), settled(ctx / "b", "b\n")
    d = later(tmp_path, ctx)
    d.digest(a, os.lstat(a))
    d.digest(b, os.lstat(b))
    d.save()
    only_a = later(tmp_path, ctx)
    only_a.digest(a, os.lstat(a))
    only_a.save()  # b is no longer read: its entry goes
    assert set(later(tmp_path, ctx).known) == {a}
    other = tmp_path / "other"
    other.mkdir()
    assert later(tmp_path, ctx).path != StatDigests(tmp_path, other).path


def test_a_broken_file_only_costs_hashing_again(tmp_path, reads):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    a = settled(ctx / "a", "a\n")
    d = later(tmp_path, ctx)
    d.path.parent.mkdir(parents=True)
    d.path.write_text("{not json")
    fresh = later(tmp_path, ctx)
    assert fresh.known == {} and fresh.digest(a, os.lstat(a)) == file_digest(a)
