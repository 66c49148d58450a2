"""happyhome.toml: defaults, loading, validation, and the workspace's paths.

The defaults are the documented file `pipeline/happyhome.toml` itself, so the file that
`happyhome init` writes and the defaults the code uses cannot drift apart.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, UsageError
from pipeline.rounds import check_key, split_key

CONFIG_NAME = "happyhome.toml"
DEFAULTS_PATH = Path(__file__).with_name(CONFIG_NAME)
PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def default_text() -> str:
    return DEFAULTS_PATH.read_text(encoding="utf-8")


def defaults() -> dict[str, Any]:
    return tomllib.loads(default_text())


def _merge(base: dict, override: dict, where: str, source: Path) -> dict:
    """Overlay a user's settings on the defaults; unknown keys and wrong types are errors."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        name = f"{where}.{key}" if where else key
        if key not in base:
            raise ConfigError(f"{source}: unknown setting '{name}'")
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{name}' must be a table")
            # free-form tables (e.g. round.deadlines) start empty and take any key
            merged[key] = _merge(default, value, name, source) if default else dict(value)
            continue
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) if numeric else isinstance(value, type(default))
        if not ok:
            raise ConfigError(f"{source}: '{name}' must be {type(default).__name__}, found {value!r}")
        merged[key] = value
    return merged


def check_period(period: str) -> str:
    if not isinstance(period, str) or not PERIOD_RE.match(period):
        raise UsageError(f"--period must be a month as YYYY-MM (e.g. 2026-11), got {period!r}")
    return period


@dataclass
class Workspace:
    """A workspace folder: its settings and where everything lives."""

    root: Path
    settings: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path = ".") -> "Workspace":
        root = Path(root).resolve()
        path = root / CONFIG_NAME
        settings = defaults()
        if path.is_file():
            try:
                user = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
                raise ConfigError(f"{path}: not valid TOML: {err}") from err
            settings = _merge(settings, user, "", path)
        _validate(settings, path)
        return cls(root, settings)

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.settings[section]

    def path(self, key: str) -> Path:
        return (self.root / self.settings["paths"][key]).resolve()

    @property
    def output(self) -> Path:
        return self.path("output")

    # `period` below is a round's key: "2026-11" for a 督导 round, "2027-03-遴选" for another
    # stage (pipeline.rounds): the folders of the stages stay apart.
    def period_output(self, period: str) -> Path:
        return self.output / check_key(period)

    def returned(self, period: str) -> Path:
        return self.path("returned") / check_key(period)

    def forms_dir(self, period: str, system_id: str) -> Path:
        return self.output / "forms" / check_key(period) / system_id

    def deadline(self, period: str) -> datetime:
        """The end of the day returns for `period` (a round key: its month counts) are due."""
        period = split_key(check_key(period))[0]
        override = self.settings["round"]["deadlines"].get(period)
        if override:
            day = datetime.fromisoformat(str(override))
            return day.replace(hour=23, minute=59, second=59) if len(str(override)) <= 10 else day
        year, month = map(int, check_period(period).split("-"))
        return datetime(year, month, int(self.settings["round"]["deadline_day"]), 23, 59, 59)


def _validate(s: dict, path: Path) -> None:
    sc = s["scoring"]
    if sc["method"] not in ("mean", "trimmed"):
        raise ConfigError(f"{path}: 'scoring.method' must be \"mean\" or \"trimmed\", found {sc['method']!r}")
    for band in sc["grades"]:
        if not isinstance(band, dict) or set(band) != {"name", "min"}:
            raise ConfigError(f"{path}: each of 'scoring.grades' needs exactly 'name' and 'min'")
    mins = [band["min"] for band in sc["grades"]]
    if mins != sorted(mins, reverse=True):
        raise ConfigError(f"{path}: 'scoring.grades' must be listed from the highest 'min' down")
    if s["calibration"]["official"] not in ("plain", "calibrated"):
        raise ConfigError(f"{path}: 'calibration.official' must be \"plain\" or \"calibrated\"")
    if not 1 <= s["round"]["deadline_day"] <= 28:
        raise ConfigError(f"{path}: 'round.deadline_day' must be between 1 and 28")
    acc = s["acceptance"]
    if not acc["conditional"] <= acc["pass"]:
        raise ConfigError(f"{path}: 'acceptance.conditional' ({acc['conditional']}) must not exceed 'acceptance.pass' ({acc['pass']})")
    if not 0 < acc["item_share"] <= 1:
        raise ConfigError(f"{path}: 'acceptance.item_share' must be above 0 and at most 1, found {acc['item_share']!r}")
    if not (isinstance(acc["rectify_days"], int) and acc["rectify_days"] >= 1):
        raise ConfigError(f"{path}: 'acceptance.rectify_days' must be a whole number of days, at least 1")
    for period, day in s["round"]["deadlines"].items():
        try:
            check_period(period)
            datetime.fromisoformat(str(day))
        except (UsageError, ValueError) as err:
            raise ConfigError(f"{path}: 'round.deadlines' needs \"YYYY-MM\" = \"YYYY-MM-DD\", found {period} = {day!r}") from err
