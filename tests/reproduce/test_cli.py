"""The `alstm` entry point: help on every subcommand, one-line errors, exit codes."""

import subprocess
import sys

import pytest

from reproduce.cli import COMMANDS, build_parser, main


def test_every_subcommand_has_help(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: alstm {name}")


def test_unknown_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_console_script_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "reproduce.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for name in COMMANDS:
        assert name in proc.stdout
    assert set(COMMANDS) <= set(build_parser()._subparsers._group_actions[0].choices)
