"""Transfer details that need no registry: Docker Hub's absence, reproducible gzip, progress."""

import gzip
import io

import httpx
import pytest

from orch.errors import Unavailable
from orch.registry import progress
from orch.registry.pull import pull
from orch.registry.push import gzip_reproducibly


def _unreachable(request):
    raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution")


def test_pulling_from_docker_hub_here_says_it_is_unreachable(tmp_path):
    from orch.node.runtime.images import ImageStore

    store = ImageStore(tmp_path)
    with pytest.raises(Unavailable) as err:
        pull(store, "busybox", transport=httpx.MockTransport(_unreachable))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("cannot reach Docker Hub (registry-1.docker.io): [Errno -3] Temporary failure in name resolution; "
                              "this machine has no route to Docker Hub")
    assert store.list() == []


def test_other_registries_name_themselves(tmp_path):
    from orch.node.runtime.images import ImageStore

    with pytest.raises(Unavailable, match=r"^cannot reach registry reg.example:5000: .*; is it running, and is the address right\?$"):
        pull(ImageStore(tmp_path), "reg.example:5000/app", transport=httpx.MockTransport(_unreachable))


def test_gzip_is_reproducible():
    data = b"some layer bytes " * 1000
    outs = []
    for _ in range(2):
        buf = io.BytesIO()
        gzip_reproducibly(io.BytesIO(data), buf)
        outs.append(buf.getvalue())
    assert outs[0] == outs[1]
    assert outs[0][4:8] == b"\0\0\0\0"  # mtime 0
    assert gzip.decompress(outs[0]) == data


def test_throttle_reports_about_every_percent_and_the_end():
    seen = []
    t = progress.Throttle(seen.append, "Downloading", "abc", 100 << 20)
    for _ in range(400):
        t(256 << 10)
    currents = [e["progressDetail"]["current"] for e in seen]
    assert len(currents) == 100
    assert currents[-1] == 100 << 20
    assert all(e["id"] == "abc" and e["status"] == "Downloading" for e in seen)


def test_plain_renderer_prints_statuses_not_bytes():
    out = io.StringIO()
    r = progress.PlainRenderer(out)
    r({"status": "latest: Pulling from library/busybox"})
    r({"status": "Downloading", "id": "abc", "progressDetail": {"current": 1, "total": 2}})
    r({"status": "Pull complete", "id": "abc"})
    assert out.getvalue() == "latest: Pulling from library/busybox\nabc: Pull complete\n"


def test_bar_renderer_draws_one_bar_per_layer():
    out = io.StringIO()
    r = progress.BarRenderer(out)
    r({"status": "Downloading", "id": "abc", "progressDetail": {"current": 512, "total": 1024}})
    r({"status": "Downloading", "id": "def", "progressDetail": {"current": 1024, "total": 1024}})
    r({"status": "Pull complete", "id": "abc"})
    r({"status": "Digest: sha256:x"})
    r.close()
    text = out.getvalue()
    assert "abc: Pull complete" in text and "def: Downloading" in text and "Digest: sha256:x" in text
