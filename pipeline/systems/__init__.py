"""Indicator systems as data: load, check and describe them.

A system is a YAML file (see zone.yaml, community.yaml beside this module). Anywhere a
system id is accepted, a path to a YAML file in the same schema works too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from pipeline.errors import ConfigError
from pipeline.i18n import _

HERE = Path(__file__).parent
BUILTIN = ("zone", "community")
ITEM_FIELDS = ("code", "一级指标", "二级指标", "三级指标", "满分", "评价内容")
LEVEL1 = ("基础指标", "进阶指标")


@dataclass(frozen=True)
class Item:
    code: str
    level1: str  # 一级指标
    level2: str  # 二级指标
    level3: str  # 三级指标 (short name)
    max: float  # 满分
    criterion: str  # 评价内容


@dataclass(frozen=True)
class System:
    id: str
    name: str
    version: str
    subject_type: str  # the roster's 类型 this system scores
    total: float
    items: tuple[Item, ...]
    decisions: tuple[str, ...] = ()
    source: str = ""
    path: Path | None = field(default=None, compare=False)

    @cached_property
    def by_code(self) -> dict[str, Item]:
        return {item.code: item for item in self.items}

    @cached_property
    def codes_by_upper(self) -> dict[str, str]:
        """Item codes by their upper case: a code typed as c01 is still C01."""
        return {code.upper(): code for code in self.by_code}

    @cached_property
    def codes(self) -> tuple[str, ...]:
        return tuple(item.code for item in self.items)

    @cached_property
    def level2_names(self) -> tuple[str, ...]:
        """二级指标 in the order they first appear."""
        return tuple(dict.fromkeys(item.level2 for item in self.items))

    @cached_property
    def checksum(self) -> str:
        """A fingerprint of the structure a form is built on: codes, grouping and maxima.

        Texts are left out on purpose: correcting a typo in a criterion does not
        invalidate forms already sent out, but changing a code or a 满分 does.
        """
        shape = [[i.code, i.level1, i.level2, i.level3, i.max] for i in self.items]
        blob = json.dumps([self.id, self.total, shape], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def load_system(ref: str | Path) -> System:
    """Load a built-in system by id (``zone``, ``community``) or a YAML file by path."""
    ref_str = str(ref)
    if ref_str in BUILTIN:
        path = HERE / f"{ref_str}.yaml"
    else:
        path = Path(ref_str)
        if not path.is_file():
            raise ConfigError(_("Unknown indicator system {ref!r}: use one of {known}, or the path of a YAML file.")
                              .format(ref=ref_str, known=_(", ").join(BUILTIN)))
    try:
        # The shipped systems through libyaml where it is built in (a few ms of every command's start);
        # an office's own file through the pure-Python loader, whose error messages point at the line.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader) if ref_str in BUILTIN else yaml.SafeLoader
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(_("{path}: cannot read the indicator system: {error}").format(path=path, error=err)) from err
    return parse_system(data, path)


def parse_system(data: object, path: Path) -> System:
    """Check a system's data and build it; every problem names the file and the field."""
    problems: list[str] = []

    def need(obj: dict, key: str, where: str):
        if key not in obj or obj[key] in (None, ""):
            problems.append(_("{where}: missing field '{key}'").format(where=where, key=key))
            return None
        return obj[key]

    if not isinstance(data, dict):
        raise ConfigError(_("{path}: an indicator system must be a mapping with 'id', 'total' and 'items'").format(path=path))
    sys_id = need(data, "id", "id")
    name = need(data, "name", "name")
    total = need(data, "total", "total")
    subject_type = need(data, "subject_type", "subject_type")
    raw_items = need(data, "items", "items")
    items: list[Item] = []
    seen: set[str] = set()
    if raw_items is not None and not isinstance(raw_items, list):
        problems.append(_("items: must be a list"))
        raw_items = []
    for n, raw in enumerate(raw_items or [], start=1):
        where = f"items[{n}]"
        if not isinstance(raw, dict):
            problems.append(_("{where}: must be a mapping with {fields}").format(where=where, fields=", ".join(ITEM_FIELDS)))
            continue
        code = need(raw, "code", f"{where}.code")
        if code is not None:
            code = str(code).strip()
            where = f"items[{n}] ({code})"
            if code in seen:
                problems.append(_("{where}.code: duplicate code {code!r}").format(where=where, code=code))
            seen.add(code)
        values = {key: need(raw, key, f"{where}.{key}") for key in ITEM_FIELDS if key != "code"}
        values["code"] = code
        maximum = values["满分"]
        if maximum is not None:
            if isinstance(maximum, bool) or not isinstance(maximum, (int, float)) or not maximum > 0:
                problems.append(_("{where}.满分: must be a positive number, found {value!r}").format(where=where, value=maximum))
                maximum = None
        if values["一级指标"] is not None and values["一级指标"] not in LEVEL1:
            problems.append(_("{where}.一级指标: must be 基础指标 or 进阶指标, found {value!r}").format(
                where=where, value=values["一级指标"]))
        if None in values.values() or maximum is None:
            continue
        items.append(
            Item(
                code=code,
                level1=str(values["一级指标"]),
                level2=str(values["二级指标"]).strip(),
                level3=str(values["三级指标"]).strip(),
                max=float(maximum),
                criterion=str(values["评价内容"]).strip(),
            )
        )
    if not problems and total is not None:
        if isinstance(total, bool) or not isinstance(total, (int, float)):
            problems.append(_("total: must be a number, found {value!r}").format(value=total))
        elif abs(sum(i.max for i in items) - float(total)) > 1e-9:
            found = sum(i.max for i in items)
            problems.append(_("items.满分: the maxima sum to {found}, but total declares {total}").format(
                found=f"{found:g}", total=f"{total:g}"))
    if not items and not problems:
        problems.append(_("items: the system has no items"))
    if problems:
        raise ConfigError(_("{path}: invalid indicator system:").format(path=path) + "\n  - " + "\n  - ".join(problems))
    return System(
        id=str(sys_id),
        name=str(name),
        version=str(data.get("version", "1")),
        subject_type=str(subject_type),
        total=float(total),
        items=tuple(items),
        decisions=tuple(str(d) for d in data.get("decisions") or ()),
        source=str(data.get("source", "")),
        path=path,
    )


def builtin_systems() -> list[System]:
    return [load_system(sys_id) for sys_id in BUILTIN]
