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


def test_every_command_is_in_the_readme() -> None:
    names = cli.list_commands(click.Context(cli))
    missing = [name for name in names if not re.search(rf"dataferry {re.escape(name)}\b", README)]
    assert not missing, f"commands missing from README.md: {missing}"


def test_readme_exit_codes_match_the_code() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README, flags=re.M))
    assert {int(k): v for k, v in rows.items()} == EXIT_CODES


def test_readme_opens_with_the_two_commands() -> None:
    blocks = re.findall(r"```sh\n(.+?)\n```", README, flags=re.S)
    assert blocks[0].strip() == "bash scripts/quickstart"
    script = (ROOT / "scripts" / "quickstart").read_text(encoding="utf-8")
    assert re.search(r"^\.venv/bin/dataferry quickstart", script, flags=re.M)
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
