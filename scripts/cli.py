"""The `intformer` command: a click group, and the one place where its subcommands are registered.

Each subcommand is a plain `click.command` in its `*_cmd.py` file beside this one, next to the function that
does its work (the Python API, `intformer.api`, calls those functions); this module adds them to
the group, so importing any command module registers nothing and nothing here is imported back.

Expected problems (bad data, impossible configurations, corrupt files) raise `IntformerError`; they are
printed as one line on stderr with exit status 2 and no traceback.
"""
from __future__ import annotations

import sys

import click

from intformer.model.errors import IntformerError

from . import (build_cmd, eval_cmd, infer_cmd, program_cmd, run_cmd, sim_cmd, sweep_cmd, train_cmd,
               verify_cmd)


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


COMMANDS = (train_cmd.train, eval_cmd.eval_, sim_cmd.sim, build_cmd.build_cmd, program_cmd.program_cmd,
            infer_cmd.infer_cmd, verify_cmd.verify, run_cmd.run, sweep_cmd.sweep)
for _command in COMMANDS:
    cli.add_command(_command)


def main():
    cli()
