"""`happyhome init`: lay out a workspace with a documented config and an example roster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.atomic import write_text
from pipeline.config import CONFIG_NAME, default_text
from pipeline.roster import write_roster


@dataclass
class InitResult:
    root: Path
    created: list[Path]
    kept: list[Path]


def init_workspace(root: str | Path = ".") -> InitResult:
    """Create input/, output/, happyhome.toml and input/roster.xlsx; never overwrite a file."""
    root = Path(root).resolve()
    created, kept = [], []
    for folder in (root / "input" / "returned", root / "output"):
        if not folder.exists():
            folder.mkdir(parents=True)
            created.append(folder)
    config, roster = root / CONFIG_NAME, root / "input" / "roster.xlsx"
    if config.exists():
        kept.append(config)
    else:
        created.append(write_text(config, default_text()))
    if roster.exists():
        kept.append(roster)
    else:
        created.append(write_roster(roster))
    return InitResult(root, created, kept)
