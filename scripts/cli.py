"""The `intformer` command: a click group whose subcommands live beside this file.

Expected problems (bad data, impossible configurations, corrupt files) raise `IntformerError`; they are
printed as one line on stderr with exit status 2 and no traceback.
"""
from __future__ import annotations

import json
import sys

import click

from model.errors import IntformerError


class Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except IntformerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="intformer")
def cli():
    """Train integer-only Transformer forecasters and build them as bit-exact FPGA accelerators."""


def emit(result: dict, as_json: bool, table) -> None:
    """Print the machine-readable result (--json) or the human table."""
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        table(result)


def main():
    # importing the modules registers their subcommands
    from . import build_cmd, eval_cmd, infer_cmd, program_cmd, run_cmd, sim_cmd, sweep_cmd, train_cmd, verify_cmd  # noqa: F401
    cli()
