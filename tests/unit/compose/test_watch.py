"""compose watch's rules (orch/compose/watch.py): develop.watch entries as triggers, compose's
ignore rules, and what a batch of changes does to each service."""

import pytest

from orch.compose.watch import Ignore, compute_triggers, dockerignore_matcher, plan_changes
from orch.errors import InvalidArgument

DEVELOP = {"watch": [
    {"action": "sync", "path": "./web", "target": "/src", "ignore": ["node_modules/", "*.tmp"]},
    {"action": "rebuild", "path": "package.json"},
    {"action": "sync+restart", "path": "./conf/nginx.conf", "target": "/etc/nginx/nginx.conf"},
]}


def triggers():
    return compute_triggers("web", DEVELOP, "/p")


def test_triggers_resolve_paths_against_the_project():
    sync, rebuild, restart = triggers()
    assert (sync.action, sync.path, sync.target, sync.ignore) == ("sync", "/p/web", "/src", ("node_modules/", "*.tmp"))
    assert (rebuild.action, rebuild.path) == ("rebuild", "/p/package.json")
    assert (restart.path, restart.target) == ("/p/conf/nginx.conf", "/etc/nginx/nginx.conf")
    assert compute_triggers("web", None, "/p") == []


@pytest.mark.parametrize("develop,words", [
    ({"watch": [{"action": "copy", "path": "x"}]}, r"watch\[0\]\.action: 'copy' is not one of"),
    ({"watch": [{"action": "sync", "path": "x"}]}, r"watch\[0\]\.target: a sync trigger needs an absolute path"),
    ({"watch": [{"action": "sync", "path": "x", "target": "rel"}]}, r"watch\[0\]\.target"),
    ({"watch": [{"action": "rebuild"}]}, r"watch\[0\]\.path"),
    ({"watch": [{"action": "rebuild", "path": "x", "ignore": "y"}]}, r"watch\[0\]\.ignore"),
    ("yes", r"services\.web\.develop: give a mapping"),
])
def test_bad_entries_are_one_line_naming_them(develop, words):
    with pytest.raises(InvalidArgument, match=words):
        compute_triggers("web", develop, "/p")


@pytest.mark.parametrize("path,ignored", [
    ("/p/web/app.js", False),
    ("/p/web/lib/x/y.js", False),
    ("/p/web/node_modules/left-pad/index.js", True),  # the trigger's own ignore, a directory
    ("/p/web/a.tmp", True),
    ("/p/web/sub/a.tmp", False),  # *.tmp is relative to the trigger's path, as .dockerignore's
    ("/p/web/app.js~", True),  # editors' files (compose's EphemeralPathMatcher)
    ("/p/web/.app.js.swp", True),
    ("/p/web/.#app.js", True),
    ("/p/web/#app.js#", True),
    ("/p/web/4913", True),
    ("/p/web/x.js___jb_tmp___", True),
    ("/p/web/.idea/workspace.xml", True),
    ("/p/web/.git/index", True),
    ("/p/web/dist/bundle.js", True),  # the build context's .dockerignore
    ("/p/web/notes.md", True),
])
def test_ignore_rules(path, ignored):
    sync = triggers()[0]
    ignore = Ignore(sync, "/p/web", dockerignore_matcher("dist\n*.md\n"))
    assert ignore.ignored(path) is ignored


def test_a_batch_per_service():
    ts = triggers()
    ignores = {t: Ignore(t) for t in ts}
    plans = plan_changes(ts, ignores, {"/p/web/a.js": True, "/p/web/gone.js": False, "/p/web/x~": True, "/p/other": True})
    assert plans["web"].sync == {"/src/a.js": "/p/web/a.js", "/src/gone.js": None}
    assert not plans["web"].rebuild and not plans["web"].restart
    plans = plan_changes(ts, ignores, {"/p/conf/nginx.conf": True})
    assert plans["web"].sync == {"/etc/nginx/nginx.conf": "/p/conf/nginx.conf"} and plans["web"].restart
    # A rebuild makes the sync and restart of the same batch moot: the new image has the files.
    plans = plan_changes(ts, ignores, {"/p/web/a.js": True, "/p/package.json": True})
    assert plans["web"].rebuild and plans["web"].sync == {} and not plans["web"].restart
    assert plan_changes(ts, ignores, {"/p/web/node_modules/x": True}) == {}
