"""happyhome.toml: defaults, loading, validation, and the workspace's paths.

The defaults are the documented file `pipeline/happyhome.toml` itself, so the file that
`happyhome init` writes and the defaults the code uses cannot drift apart.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, UsageError
from pipeline.i18n import _
from pipeline.rounds import check_key, split_key

CONFIG_NAME = "happyhome.toml"
DEFAULTS_PATH = Path(__file__).with_name(CONFIG_NAME)
PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
LEDGER_URL_ENV = "HAPPYHOME_LEDGER_URL"  # overrides [paths] ledger: a postgresql:// URL or a file
URL_SCHEMES = ("postgresql://", "postgres://")
# With the ledger in PostgreSQL, what stays local (the workspace lock) lives beside this name.
LOCAL_LEDGER = "ledger/postgresql"


def is_url(location: str) -> bool:
    """Whether a ledger location is a PostgreSQL URL (anything else is an SQLite file)."""
    return str(location).startswith(URL_SCHEMES)


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
            raise ConfigError(_("{source}: unknown setting '{name}'").format(source=source, name=name))
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(_("{source}: '{name}' must be a table").format(source=source, name=name))
            # free-form tables (e.g. round.deadlines) start empty and take any key
            merged[key] = _merge(default, value, name, source) if default else dict(value)
            continue
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) if numeric else isinstance(value, type(default))
        if not ok:
            raise ConfigError(_("{source}: '{name}' must be {type}, found {value!r}").format(
                source=source, name=name, type=type(default).__name__, value=value))
        merged[key] = value
    return merged


def check_period(period: str) -> str:
    if not isinstance(period, str) or not PERIOD_RE.match(period):
        raise UsageError(_("--period must be a month as YYYY-MM (e.g. 2026-11), got {value!r}").format(value=period))
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
                raise ConfigError(_("{path}: not valid TOML: {error}").format(path=path, error=err)) from err
            settings = _merge(settings, user, "", path)
        _validate(settings, path)
        return cls(root, settings)

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.settings[section]

    def path(self, key: str) -> Path:
        value = self.settings["paths"][key]
        if key == "ledger" and is_url(value):
            value = LOCAL_LEDGER
        return (self.root / value).resolve()

    def ledger_location(self) -> str | Path:
        """Where the ledger is: HAPPYHOME_LEDGER_URL, else `[paths] ledger`; a postgresql:// URL
        (as a string) or the SQLite file (a path, relative to the workspace)."""
        value = os.environ.get(LEDGER_URL_ENV) or self.settings["paths"]["ledger"]
        return value if is_url(value) else (self.root / value).resolve()

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
        raise ConfigError(_("{path}: 'scoring.method' must be \"mean\" or \"trimmed\", found {value!r}").format(
            path=path, value=sc["method"]))
    for band in sc["grades"]:
        if not isinstance(band, dict) or set(band) != {"name", "min"}:
            raise ConfigError(_("{path}: each of 'scoring.grades' needs exactly 'name' and 'min'").format(path=path))
    mins = [band["min"] for band in sc["grades"]]
    if mins != sorted(mins, reverse=True):
        raise ConfigError(_("{path}: 'scoring.grades' must be listed from the highest 'min' down").format(path=path))
    if s["calibration"]["official"] not in ("plain", "calibrated"):
        raise ConfigError(_("{path}: 'calibration.official' must be \"plain\" or \"calibrated\"").format(path=path))
    if not 1 <= s["round"]["deadline_day"] <= 28:
        raise ConfigError(_("{path}: 'round.deadline_day' must be between 1 and 28").format(path=path))
    acc = s["acceptance"]
    if not acc["conditional"] <= acc["pass"]:
        raise ConfigError(_("{path}: 'acceptance.conditional' ({conditional}) must not exceed 'acceptance.pass' ({line})")
                          .format(path=path, conditional=acc["conditional"], line=acc["pass"]))
    if not 0 < acc["item_share"] <= 1:
        raise ConfigError(_("{path}: 'acceptance.item_share' must be above 0 and at most 1, found {share!r}")
                          .format(path=path, share=acc["item_share"]))
    if not (isinstance(acc["rectify_days"], int) and acc["rectify_days"] >= 1):
        raise ConfigError(_("{path}: 'acceptance.rectify_days' must be a whole number of days, at least 1")
                          .format(path=path))
    for period, day in s["round"]["deadlines"].items():
        try:
            check_period(period)
            datetime.fromisoformat(str(day))
        except (UsageError, ValueError) as err:
            raise ConfigError(_("{path}: 'round.deadlines' needs \"YYYY-MM\" = \"YYYY-MM-DD\", found {period} = {day!r}")
                              .format(path=path, period=period, day=day)) from err
    if s["collect"]["missing_reason"] not in ("warning", "error"):
        raise ConfigError(_("{path}: 'collect.missing_reason' must be \"warning\" or \"error\", found {value!r}").format(
            path=path, value=s["collect"]["missing_reason"]))
    if not 0 <= s["forms"]["reason_below_share"] <= 1:
        raise ConfigError(_("{path}: 'forms.reason_below_share' must be between 0 and 1, found {value!r}").format(
            path=path, value=s["forms"]["reason_below_share"]))
    for name, least in (("digest_full_max", 0), ("digest_page_rows", 1), ("digest_cards_each", 0),
                        ("digest_cards_max", 0), ("digest_flags_max", 0), ("parallel_min_scores", 0)):
        value = s["report"][name]
        if not (isinstance(value, int) and value >= least):
            raise ConfigError(_("{path}: 'report.{name}' must be a whole number of at least {least}, found {value!r}")
                              .format(path=path, name=name, least=least, value=value))
    timeout = s["report"]["pdf_timeout"]
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise ConfigError(_("{path}: 'report.pdf_timeout' must be a number of seconds (0: by the page's size), "
                            "found {value!r}").format(path=path, value=timeout))
    if not s["report"]["digest_near_points"] >= 0:
        raise ConfigError(_("{path}: 'report.digest_near_points' must not be negative, found {value!r}")
                          .format(path=path, value=s["report"]["digest_near_points"]))
    _validate_selection(s["selection"], path)


def _validate_selection(sel: dict, path: Path) -> None:
    """[selection]: what can be checked without knowing the system (names are checked per system
    by pipeline.selection.check_settings)."""
    for system, places in sel["places"].items():
        if not isinstance(places, int) or isinstance(places, bool) or places < 0:
            raise ConfigError(_("{path}: 'selection.places.{system}' must be a whole number >= 0, found {places!r}")
                              .format(path=path, system=system, places=places))
    if not all(isinstance(name, str) and name.strip() for name in sel["tie_break"]):
        raise ConfigError(_("{path}: 'selection.tie_break' must list names of 一级指标, 二级指标 or item codes")
                          .format(path=path))
    if not isinstance(sel["publicity_days"], int) or not 1 <= sel["publicity_days"] <= 60:
        raise ConfigError(_("{path}: 'selection.publicity_days' must be a whole number of working days, 1 to 60")
                          .format(path=path))
    for n, rule in enumerate(sel["veto"], start=1):
        if not isinstance(rule, dict) or set(rule) != {"item", "below_share"}:
            raise ConfigError(_("{path}: each [[selection.veto]] needs exactly 'item' and 'below_share' (rule {n})")
                              .format(path=path, n=n))
        share = rule["below_share"]
        if not isinstance(rule["item"], str) or isinstance(share, bool) or not isinstance(share, (int, float)) \
                or not 0 < share <= 1:
            raise ConfigError(_("{path}: [[selection.veto]] rule {n}: 'item' is an item code and 'below_share' a "
                                "share between 0 and 1, found {rule!r}").format(path=path, n=n, rule=rule))
