"""Base images without a registry: busybox from Debian's busybox-static, debian from debootstrap.

This machine cannot reach Docker Hub, so the first images come from the Debian mirror it
already uses:

- `busybox:latest`: `apt-get download busybox-static`, `dpkg-deb -x`, then a tree like the
  official image's: /bin/busybox with a symlink in /bin for every applet `busybox --list`
  names, /etc/passwd (root, nobody), /etc/group, an empty /etc/hosts, and the empty /dev,
  /proc, /sys, /tmp, /root, /home, /var directories; Cmd ["sh"].
- `debian:bookworm`: `debootstrap --variant=minbase bookworm DIR MIRROR`, with the mirror
  read from /etc/apt/sources.list(.d); logs and caches that differ from run to run are
  removed; Cmd ["bash"].

Both are reproducible: every mtime is clamped to the package's own newest mtime (the build
date of the .deb, or of the newest package debootstrap installed), entries are sorted and
owners numeric, so two bootstraps of the same package version give the same diff ID and the
same image id. When the image exists already the call returns at once; `force` rebuilds.
"""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from orch.errors import InvalidArgument, SystemFailure
from orch.node.runtime import layers

BASES = {"busybox": "busybox:latest", "debian": "debian:bookworm"}
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def bootstrap(store, name: str, force: bool = False) -> tuple[object, bool, str]:
    """Make base image `name` ("busybox" or "debian"); return (image, built?, message)."""
    if name not in BASES:
        raise InvalidArgument(f"unknown base image '{name}'; choose one of: {', '.join(sorted(BASES))}")
    ref = BASES[name]
    if not force and store.exists(ref):
        image = store.resolve(ref)
        return image, False, f"{ref} is already there ({image.short_id}); use --force to build it again"
    build = _build_busybox if name == "busybox" else _build_debian
    tmp = Path(tempfile.mkdtemp(prefix=f"bootstrap-{name}-", dir=store.tmp))
    try:
        image = build(store, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return image, True, f"built {ref} ({image.short_id}, {len(image.diff_ids)} layer)"


def _run(argv: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise SystemFailure(f"{what}: '{argv[0]}' is not installed; install it with 'apt-get install {argv[0]}'") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise SystemFailure(f"{what}: '{' '.join(argv[:3])}' failed (exit {proc.returncode}): {last[0]}")
    return proc


def newest_mtime(root: Path) -> int:
    newest = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            newest = max(newest, int(os.lstat(os.path.join(dirpath, n)).st_mtime))
    return newest


# -- busybox ---------------------------------------------------------------------------------


def download_deb(package: str, into: Path) -> Path:
    """`apt-get download` a package (refreshing the lists once if apt does not know it)."""
    try:
        _run(["apt-get", "download", package], f"download {package}", cwd=into)
    except SystemFailure:
        _run(["apt-get", "update"], "apt-get update")
        _run(["apt-get", "download", package], f"download {package}", cwd=into)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if not debs:
        raise SystemFailure(f"download {package}: apt-get reported success but left no .deb in {into}")
    return debs[-1]


def busybox_tree(root: Path, busybox: Path, applets: list[str], epoch: int) -> None:
    """Lay out a busybox rootfs in `root` (pure file work, so tests can call it with any binary)."""
    for d, mode in (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755), ("proc", 0o555), ("root", 0o700),
                    ("sys", 0o555), ("tmp", 0o1777), ("usr", 0o755), ("usr/sbin", 0o755), ("var", 0o755), ("var/spool", 0o755),
                    ("var/spool/mail", 0o755), ("var/www", 0o755)):
        (root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(root / d, mode)
    shutil.copy2(busybox, root / "bin" / "busybox")
    os.chmod(root / "bin" / "busybox", 0o755)
    for applet in sorted(set(applets)):
        if applet != "busybox" and "/" not in applet and applet not in (".", ".."):
            os.symlink("busybox", root / "bin" / applet)
    for name, text, mode in (("passwd", PASSWD, 0o644), ("group", GROUP, 0o644), ("hosts", "", 0o644),
                             ("shadow", "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n", 0o640)):
        (root / "etc" / name).write_text(text)
        os.chmod(root / "etc" / name, mode)
    layers.clamp_mtimes(root, epoch)


def _build_busybox(store, tmp: Path):
    deb = download_deb("busybox-static", tmp)
    extracted = tmp / "deb"
    _run(["dpkg-deb", "-x", str(deb), str(extracted)], "unpack busybox-static")
    binary = extracted / "bin" / "busybox"
    if not binary.exists():
        raise SystemFailure(f"busybox-static: {deb.name} holds no bin/busybox")
    applets = _run([str(binary), "--list"], "list busybox applets").stdout.split()
    epoch = newest_mtime(extracted)
    rootfs = tmp / "rootfs"
    rootfs.mkdir()
    busybox_tree(rootfs, binary, applets, epoch)
    version = deb.name.split("_")[1].replace("%3a", ":")
    return store.import_rootfs(rootfs, "busybox:latest", {"Env": [PATH_ENV], "Cmd": ["sh"]}, created=float(epoch),
                               comment=f"orch bootstrap busybox: Debian busybox-static {version}", epoch=epoch)


# -- debian ----------------------------------------------------------------------------------


def pick_mirror(sources: dict[str, str], suite: str = "bookworm") -> str:
    """The first Debian mirror URI serving `suite` in apt's sources (one-line or deb822 files)."""
    for name in sorted(sources):
        text = sources[name]
        if name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.split()
                if "deb" in fields.get("types", []) and suite in fields.get("suites", []) and fields.get("uris") and fields.get("enabled", ["yes"]) != ["no"]:
                    return fields["uris"][0].rstrip("/")
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                    return words[1].rstrip("/")
    return DEFAULT_MIRROR


def host_mirror() -> str:
    sources = {}
    main = Path("/etc/apt/sources.list")
    if main.exists():
        sources[str(main)] = main.read_text()
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        for p in d.iterdir():
            if p.suffix in (".list", ".sources"):
                sources[str(p)] = p.read_text()
    return pick_mirror(sources)


# Files debootstrap leaves that differ between two runs (logs, caches, the machine's identity).
DEBIAN_VOLATILE = ("var/log/*", "var/cache/apt/*.bin", "var/cache/ldconfig/aux-cache", "var/lib/apt/lists/*",
                   "var/cache/apt/archives/*.deb", "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "etc/machine-id",
                   "etc/hostname", "etc/resolv.conf", "debootstrap", "run/*", "tmp/*", "var/lib/dbus/machine-id")


def _build_debian(store, tmp: Path):
    rootfs = tmp / "rootfs"
    _run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), host_mirror()], "debootstrap bookworm")
    for pattern in DEBIAN_VOLATILE:
        for p in rootfs.glob(pattern):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
    (rootfs / "etc" / "hostname").write_text("")
    (rootfs / "etc" / "resolv.conf").write_text("")
    # The newest file dpkg installed stands for "the version of this tree".
    epoch = newest_mtime(rootfs / "usr")
    layers.clamp_mtimes(rootfs, epoch)
    return store.import_rootfs(rootfs, "debian:bookworm", {"Env": [PATH_ENV], "Cmd": ["bash"]}, created=float(epoch),
                               comment="orch bootstrap debian: debootstrap --variant=minbase bookworm", epoch=epoch)
