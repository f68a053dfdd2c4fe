"""Writing a file so that a crash at any moment leaves the old or the new content, never half
of one: the one helper for every such file of orch (records, exit records, the image store's
references, the build cache, the user's credentials, drawn graphs).

A temporary file in the same directory (same file system, so the rename is atomic), written,
fsync'd, renamed over the target, and the directory fsync'd. The rename alone makes the write
atomic for processes (`kill -9` of the writer); the two fsyncs make it survive a power loss
too, at about 2-8 ms on this machine's disk. Callers pass durable=False for facts that a reboot
makes moot anyway (an exit record: after a power loss every container is gone and is adopted
as exited).

Standard library only; the temporary name is unique per process and thread, so two writers
never share one (the last rename wins).
"""

import json
import os
import threading


def write_atomic(path, data: bytes, *, durable: bool = True, mode: int = 0o600) -> None:
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask must not widen or narrow it
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if not durable:
        return
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_json_atomic(path, value, *, durable: bool = True, mode: int = 0o600, indent: int | None = None) -> None:
    """`value` as JSON (keys sorted). Compact unless `indent`: json's C encoder writes compact
    text; indent takes the pure-Python one, about ten times slower."""
    text = json.dumps(value, sort_keys=True, indent=indent)
    write_atomic(path, (text + "\n" if indent is not None else text).encode(), durable=durable, mode=mode)


def remove_leftovers(directory, name: str) -> None:
    """Delete what a writer killed mid-write left of `name` (its temporary files)."""
    prefix = f"{name}.tmp."
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.startswith(prefix):
            try:
                os.unlink(os.path.join(directory, entry))
            except FileNotFoundError:
                pass
