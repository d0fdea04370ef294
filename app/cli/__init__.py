"""The `preflab` command line: migrate, serve, create users, seed the demo, export and import."""

from app.cli import accounts, data, server
from app.cli.base import cli

COMMANDS = (accounts, data, server)
"""The modules whose commands `cli` runs (each registers its own with `@cli.command`)."""


def main() -> None:
    cli(prog_name="preflab")
