"""The one argument parser every `orch` command uses: argparse, with misuse reported as one
line (`orch: argument --cpus: invalid float value: 'x'; see 'orch run --help'`) and
exit status 1, instead of argparse's usage block and exit 2.

Abbreviations are off (allow_abbrev=False): argparse would otherwise take `--pid host` for
`--pids-limit host` and `--mem 1g` for `--memory`, where docker refuses an unknown flag. A
flag is spelled out or it is an error."""

import argparse

from orch.errors import InvalidArgument


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, allow_abbrev: bool = False, **kwargs):
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)

    def error(self, message):
        raise InvalidArgument(f"{message}; see '{self.prog} --help'")
