"""What every command shares and none registers: the machine-readable result or the human table."""
from __future__ import annotations

import json

import click


def emit(result: dict, as_json: bool, table) -> None:
    """Print the machine-readable result (--json) or the human table."""
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        table(result)
