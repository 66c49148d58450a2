"""`happyhome init`: lay out a workspace with a documented config, an example roster and the
office key that seals its forms (pipeline.officekey; created once, never overwritten).

`init` can also set the round's organiser, contact and deadline day (`[round]` in happyhome.toml),
so forms and letters carry them from the first round. The values are written into the commented
file in place, each line `key = value` replaced (or added under `[round]`), the comments kept.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.atomic import write_text
from pipeline.config import CONFIG_NAME, Workspace, default_text, defaults
from pipeline.errors import ConfigError
from pipeline.i18n import _
from pipeline.officekey import create_key, key_path
from pipeline.roster import write_roster

ROUND_KEYS = ("organiser", "contact", "deadline_day")


@dataclass
class InitResult:
    root: Path
    created: list[Path]
    kept: list[Path]
    settings: dict[str, object] = field(default_factory=dict)  # [round] values written into happyhome.toml
    updated: list[Path] = field(default_factory=list)  # an existing happyhome.toml that took them


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def set_round(text: str, values: dict[str, object]) -> str:
    """The TOML text with `[round]` keys set to `values` in place; comments and layout kept."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == "[round]"), None)
    if start is None:
        lines += ["" if not lines or lines[-1].endswith("\n") else "\n", "\n[round]\n"]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for key, value in values.items():
        shown = toml_string(value) if isinstance(value, str) else str(value)
        pattern = re.compile(rf"^\s*{key}\s*=")
        at = next((i for i in range(start + 1, end) if pattern.match(lines[i])), None)
        if at is None:
            lines.insert(start + 1, f"{key} = {shown}\n")
            end += 1
        else:
            lines[at] = f"{key} = {shown}\n"
    new = "".join(lines)
    try:
        loaded = tomllib.loads(new)["round"]
    except (tomllib.TOMLDecodeError, KeyError) as err:
        raise ConfigError(_("Cannot set {keys} in {config}: the file would not be valid TOML ({error})").format(
            keys=", ".join(values), config=CONFIG_NAME, error=err)) from err
    assert all(loaded[k] == v for k, v in values.items()), "set_round wrote something else"
    return new


def _key_path(root: Path) -> Path:
    """paths.key of the workspace (the default when its happyhome.toml cannot be read: init
    reports nothing about a config it did not write)."""
    try:
        return key_path(Workspace.open(root))
    except ConfigError:
        return (root / defaults()["paths"]["key"]).resolve()


def init_workspace(root: str | Path = ".", *, organiser: str | None = None, contact: str | None = None,
                   deadline_day: int | None = None) -> InitResult:
    """Create input/, output/, happyhome.toml, input/roster.xlsx and the office key (paths.key);
    never overwrite a file.
    Given, the organiser, contact and deadline day are written into happyhome.toml's `[round]`
    (also into an existing one: that is the only change made to a file that exists)."""
    values = {k: v for k, v in zip(ROUND_KEYS, (organiser, contact, deadline_day)) if v is not None}
    if deadline_day is not None and not 1 <= deadline_day <= 28:
        raise ConfigError("deadline_day must be between 1 and 28")
    root = Path(root).resolve()
    created, kept, updated = [], [], []
    for folder in (root / "input" / "returned", root / "output"):
        if not folder.exists():
            folder.mkdir(parents=True)
            created.append(folder)
    config, roster = root / CONFIG_NAME, root / "input" / "roster.xlsx"
    if config.exists() and values:
        write_text(config, set_round(config.read_text(encoding="utf-8"), values))
        updated.append(config)
    elif config.exists():
        kept.append(config)
    else:
        created.append(write_text(config, set_round(default_text(), values) if values else default_text()))
    if roster.exists():
        kept.append(roster)
    else:
        created.append(write_roster(roster))
    key = _key_path(root)
    (created if create_key(key) else kept).append(key)
    return InitResult(root, created, kept, values, updated)
