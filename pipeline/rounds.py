"""A round is (system, period, stage): the programme's 遴选、督导、评估、验收 are all rounds.

督导 (monthly supervision) is the default stage, and its rounds keep the names they always had:
`input/returned/2026-11/`, `output/2026-11/`, and the period `2026-11` in the ledger. A round of
another stage carries its stage in Chinese in each of these names — its *key* — `2027-03-遴选` —
so folders and the ledger keep the stages apart without a second naming scheme.
"""

from __future__ import annotations

import re

from pipeline.errors import UsageError
from pipeline.i18n import _

SUPERVISION = "督导"
STAGES = ("遴选", "督导", "评估", "验收")  # the programme's order
ALIASES = {"selection": "遴选", "supervision": "督导", "evaluation": "评估", "acceptance": "验收"}
KEY_RE = re.compile(r"^(\d{4}-(?:0[1-9]|1[0-2]))(?:-(遴选|评估|验收))?$")


def check_stage(value: str | None) -> str:
    """The stage's Chinese name from itself or its English alias (None -> 督导)."""
    if value is None or value == "":
        return SUPERVISION
    text = str(value).strip()
    stage = ALIASES.get(text.lower(), text)
    if stage not in STAGES:
        raise UsageError(_("--stage must be one of {stages} (or {aliases}), got {value!r}").format(
            stages="|".join(STAGES), aliases="|".join(ALIASES), value=value))
    return stage


def round_key(period: str, stage: str | None = None) -> str:
    """The round's name in folders and the ledger: the period, with the stage unless 督导."""
    stage = check_stage(stage)
    return period if stage == SUPERVISION else f"{period}-{stage}"


def split_key(key: str) -> tuple[str, str] | None:
    """(period, stage) of a round key, or None when it names no round."""
    found = KEY_RE.match(key or "") if isinstance(key, str) else None
    return (found.group(1), found.group(2) or SUPERVISION) if found else None


def check_key(key: str) -> str:
    """A round key as given ("2026-11" or "2027-03-遴选"); a usage error for anything else."""
    if split_key(key) is None:
        raise UsageError(_("--period must be a month as YYYY-MM (e.g. 2026-11), got {value!r}").format(value=key))
    return key


def cli_args(key: str) -> str:
    """The options that name this round on the command line: --period 2027-03 --stage 遴选."""
    period, stage = split_key(check_key(key))
    return f"--period {period}" + ("" if stage == SUPERVISION else f" --stage {stage}")
