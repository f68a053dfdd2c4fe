"""The founding notes' figlet example on a Debian base: apt-get installs a package from the
Debian mirror during a build, through the build's own network namespace on the node's bridge
(NAT out, as docker's classic builder), and the image runs it.

Slow (a debootstrap the first time on a machine, ~30-60 s, then apt-get update ~10 s)."""

import pytest

from orch.build.builder import Builder, BuildRequest

from .conftest import cached_base, run_image

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def test_apt_get_install_figlet_in_a_build(store, context, build_network):
    store.load(cached_base("debian"))
    ctx = context({"Dockerfile": "FROM debian:bookworm\nRUN apt-get update && apt-get install -y --no-install-recommends figlet\n"
                                 "COPY greeting.txt /greeting.txt\nCMD [\"sh\", \"-c\", \"figlet $(cat /greeting.txt)\"]\n",
                   "greeting.txt": "hello docker\n"})
    lines: list[str] = []
    image = Builder(store, out=lines.append, network=build_network).build(BuildRequest(context=ctx, tags=["figlet:latest"]))
    assert any("Setting up figlet" in l for l in lines)
    code, out = run_image(store, image)
    assert code == 0
    assert out.splitlines()[0].rstrip() == " _          _ _             _            _"
    # The resolv.conf the build mounted did not end up in the image's layers.
    assert len(image.diff_ids) == 3

    (ctx / "greeting.txt").write_text("cached\n")
    lines.clear()
    again = Builder(store, out=lines.append, network=build_network).build(BuildRequest(context=ctx))
    assert lines[lines.index("Step 2/4 : RUN apt-get update && apt-get install -y --no-install-recommends figlet") + 1] == " ---> Using cache"
    assert again.diff_ids[:2] == image.diff_ids[:2]
