"""Helpers shared by the CLI tests: invoke the `intformer` group in-process and check its exits."""
from __future__ import annotations


from click.testing import CliRunner

from intformer.cli import cli

# a model small enough to train in seconds and to fit the UP5K
SMALL = ["--window", "8", "--d-model", "8", "--ffn", "16", "--epochs", "1", "--patience", "1",
         "--max-train-windows", "200", "--no-float"]


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True, env=env)


def ok(result):
    assert result.exit_code == 0, (result.exit_code, result.output, result.stderr, result.exception)
    return result


def user_error(result, *words, only_line: bool = True):
    """Exit 2, one `error: ...` line naming each of `words`, no traceback; with only_line, nothing else on
    stderr (progress lines are allowed otherwise)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error: ")]
    assert len(errors) == 1 and (not only_line or len(lines) == 1), result.stderr
    for w in words:
        assert w in errors[0], (w, errors[0])
    assert "Traceback" not in result.output
    return errors[0]
