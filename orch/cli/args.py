"""The one argument parser every `orch` command uses: argparse, with misuse reported as one
line (`orch: argument --cpus: invalid float value: 'x'; see 'orch run --help'`) and
exit status 1, instead of argparse's usage block and exit 2."""

import argparse

from orch.errors import InvalidArgument


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise InvalidArgument(f"{message}; see '{self.prog} --help'")
