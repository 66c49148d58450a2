"""The README and --help stay true: every command is documented, with an example."""

from pathlib import Path

import click
import pytest

from pipeline.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from commands(command, f"{prefix}{name} ")


@pytest.mark.parametrize("name, command", list(commands(main)))
def test_every_command_has_help_with_an_example_and_is_in_the_readme(name, command):
    assert command.help and "Example:" in command.help, name
    assert f"happyhome {name}" in README or f"happyhome -w demo {name}" in README, name


def test_the_first_screen_has_the_two_newcomer_commands():
    first_screen = "\n".join(README.splitlines()[:20])
    assert "pip install -e . && happyhome demo" in first_screen
    assert "pip install -e '.[test]' && python -m pytest" in first_screen


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -q -e '.[test]'" in ci and "python -m pytest -q" in ci
    assert '"$rc" -eq 5' in ci  # no test ran is a failure
