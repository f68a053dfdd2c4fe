"""Tar archives that end as Go's archive/tar ends them: after the two zero blocks.

Python pads a written archive to a 20-block record (GNU tar's -b20); docker's archives (cp,
export) stop after the end marker, and its clients count the bytes ("Successfully copied
2.05kB"). The record size is chosen per archive here, never by changing tarfile.RECORDSIZE:
that global also pads every other archive the process writes, an image layer's included, so
one rootfs would get a different diff ID in a process that had imported cp.
"""

from __future__ import annotations

import tarfile


class GoTarFile(tarfile.TarFile):
    """`GoTarFile.open(fileobj=..., mode="w|")`: a TarFile whose written end is two zero blocks."""

    def close(self) -> None:
        if not self.closed and self.mode in ("a", "w", "x"):
            self.fileobj.write(tarfile.NUL * (tarfile.BLOCKSIZE * 2))
            self.offset += tarfile.BLOCKSIZE * 2
            self.mode = "r"  # the end is written: TarFile.close adds no record padding
        super().close()
