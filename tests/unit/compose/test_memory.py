"""What `up` remembers of rolled back updates (orch.compose.memory): which entries hold."""

import pytest

from orch.compose.memory import compute_remembered, describe

DOC = {"rolled_back": {"app": {"hash": "bad1", "reason": "app-3 is unhealthy; rolling back to hash good", "at": "T"},
                       "web": {"hash": "bad2"}}}


@pytest.mark.parametrize("name, doc, hashes, forced, kept", [
    ("nothing remembered", {}, {"app": "bad1"}, set(), []),
    ("the file still asks for the rolled back hash: it holds", DOC, {"app": "bad1", "web": "bad2"}, set(), ["app", "web"]),
    ("a changed service (another hash) is rolled out normally", DOC, {"app": "fixed", "web": "bad2"}, set(), ["web"]),
    ("a service gone from the stack is forgotten", DOC, {"web": "bad2"}, set(), ["web"]),
    ("--force-recreate of a service tries its update again", DOC, {"app": "bad1", "web": "bad2"}, {"app"}, ["web"]),
    ("a malformed entry is ignored", {"rolled_back": {"app": "bad1"}}, {"app": "bad1"}, set(), []),
])
def test_compute_remembered(name, doc, hashes, forced, kept):
    assert sorted(compute_remembered(doc, hashes, forced)) == kept, name


def test_describe_says_what_failed_and_what_to_do():
    text = describe("app", {"hash": "0123456789abcdef", "reason": "app-3 is unhealthy", "at": "2026-01-01T00:00:00Z"})
    assert text == ("the update to config hash 01234567 failed at 2026-01-01T00:00:00Z (app-3 is unhealthy) and was rolled back; "
                    "fix the stack file, or run up --force-recreate app to try it again")
