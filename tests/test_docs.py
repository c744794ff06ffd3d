"""The docs are part of the feature: these tests keep README and the configuration reference true."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from pydantic import BaseModel

from dataferry import config
from dataferry.cli import cli
from dataferry.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIG_DOC = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


def _models() -> list[type[BaseModel]]:
    return [
        m
        for m in vars(config).values()
        if isinstance(m, type)
        and issubclass(m, BaseModel)
        and m.__module__.startswith(config.__name__ + ".")
        and m not in (config.Config, config.DatabaseRef)  # the root, and the runtime (not file) model
        and not m.__name__.startswith("_")
    ]


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_every_config_key_is_documented(model: type[BaseModel]) -> None:
    missing = [name for name in model.model_fields if f"`{name}`" not in CONFIG_DOC]
    assert not missing, f"{model.__name__} keys missing from docs/configuration.md: {missing}"


def _readme_commands() -> dict[str, str]:
    """The README's command list: each command's text, continuation lines included."""
    block = README.split("## Commands", 1)[1].split("```", 2)[1]
    found: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        m = re.match(r"^dataferry ([a-z-]+)", line)
        if m:
            current = m[1]
            found[current] = found.get(current, "") + " " + line
        elif current and line.startswith(" "):
            found[current] += " " + line
    return found


GLOBAL = {"config_path", "json_logs", "quiet"}


def _options(name: str) -> list[click.Option]:
    """A command's own options; for a group (``render kubernetes``), its subcommands' too."""
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    commands = [command]
    if isinstance(command, click.Group):
        commands += list(command.commands.values())
    return [
        p
        for c in commands
        for p in c.params
        if isinstance(p, click.Option) and p.name not in GLOBAL and not p.hidden
    ]


def test_readme_command_list_covers_every_command_and_option() -> None:
    """Every command has a line in the README's list, naming each of its options (legacy's flags
    are GOV.UK's script's, listed as they are); and the list names no option a command lacks."""
    listed = _readme_commands()
    names = cli.list_commands(click.Context(cli))
    assert sorted(listed) == sorted(names), "README.md's command list differs from the CLI"
    missing = {
        name: [
            o.opts[0]
            for o in _options(name)
            if not any(re.search(rf"{re.escape(x)}\b", listed[name]) for x in o.opts)
        ]
        for name in names
    }
    assert not {k: v for k, v in missing.items() if v}, (
        f"options missing from README.md's command list: {missing}"
    )
    for name, text in listed.items():
        known = {x for o in _options(name) for x in o.opts + o.secondary_opts}
        if name != "legacy":
            unknown = set(re.findall(r"(?<![\w-])--?[a-z][a-z-]*", text)) - known
            assert not unknown, f"README.md lists {sorted(unknown)} for '{name}', which has no such option"


def test_every_command_is_in_the_readme() -> None:
    names = cli.list_commands(click.Context(cli))
    missing = [name for name in names if not re.search(rf"dataferry {re.escape(name)}\b", README)]
    assert not missing, f"commands missing from README.md: {missing}"


@pytest.mark.parametrize("doc", ["README.md", "docs/runbook.md"])
def test_exit_code_tables_match_the_code(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", text, flags=re.M))
    assert {int(k): v for k, v in rows.items()} == EXIT_CODES


def test_readme_opens_with_the_two_commands() -> None:
    blocks = re.findall(r"```sh\n(.+?)\n```", README, flags=re.S)
    assert blocks[0].strip() == "bash scripts/quickstart"
    script = (ROOT / "scripts" / "quickstart").read_text(encoding="utf-8")
    assert re.search(r"^\s*\.venv/bin/dataferry quickstart", script, flags=re.M)
    assert blocks[1].strip() == "bash scripts/test"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^bash scripts/test$", ci, flags=re.M), ".ci/run must run the README's test command"


def test_the_reliability_page_shows_the_fault_suite_it_runs() -> None:
    """docs/reliability.md's matrix names exactly the points, engines, signals and S3 faults the
    fault suite runs (tests/fault_points.py, tests/fault/, tests/integration/test_s3_faults.py)."""
    from fault.test_kill_matrix import RIGS
    from fault_points import PHASES, SIGNALS
    from integration.test_s3_faults import S3_FAULTS

    page = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    points = re.findall(r"^\| `((?:backup|restore):[a-z-]+)` \|", page, flags=re.M)
    assert points == list(PHASES)
    assert re.findall(r"^\| `([a-z0-9]+)` \|", page, flags=re.M) == S3_FAULTS
    assert f"Rigs: {', '.join(f'`{r}`' for r in RIGS)}." in page
    assert f"Signals: {', '.join(f'`{s}`' for s in SIGNALS)}." in page
    cells = len(PHASES) * len(SIGNALS) * len(RIGS)
    assert (
        f"| kill matrix | {cells} ({len(PHASES)} points x {len(SIGNALS)} signals x {len(RIGS)} rigs) |"
        in page
    )
    assert f"| S3 fault cells | {len(S3_FAULTS) * 2} ({len(S3_FAULTS)} faults x 2 directions) |" in page
