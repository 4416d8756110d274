"""The ``bulkpush`` command line: thin, it parses arguments and builds the same
objects the library uses.

Exit codes (a contract): 0 every product accepted; 1 finished with rejected
products; 2 usage or input error; 3 run stopped by the API or the network.
"""

from __future__ import annotations

import click

from bulkpush._version import __version__
from bulkpush.emulator.cli import emulator_command

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="bulkpush")
def cli() -> None:
    """bulkpush: push product catalogs into product-data platforms, fast, losing nothing."""


cli.add_command(emulator_command, name="emulator")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="bulkpush")
