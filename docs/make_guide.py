"""Regenerate what docs/使用说明.md shows: command outputs, the problem table and the pictures.

    python docs/make_guide.py              # outputs, problem table, pictures, manifest
    python docs/make_guide.py --no-pictures

Run it whenever a command's output, a problem message, the form or the digest changes (the
test `tests/test_guide.py` fails with this command's name when the pictures are stale). It
builds a small seeded example workspace in a temporary folder and walks the guide from top to
bottom, acting on these markers (HTML comments, invisible when the guide is rendered):

    <!-- run: happyhome forms --system community --period 2026-11 -->
    ```text
    (the command's real output, put here and replaced by the script)
    ```

    <!-- step: NAME [ARG] -->   an action the officer takes by hand, done here by the script:
        cd DIR           later commands run in DIR (the workspace), as after `cd DIR`
        roster PERIOD    write the example roster of a programme whose latest round is PERIOD
                         (the officer edits input/roster.xlsx) and the office's contact
        previous-month   run the month before the guide's round: forms, returns, collect, report
        returns PERIOD   put the example returns of PERIOD into input/returned/PERIOD/
        mail             fill [mail] in happyhome.toml with the example office mailbox (send --dry-run)

    <!-- list: input/returned/2026-11 -->   followed by a ```text block: the folder's files

    <!-- sheet: output/2026-11/collection-community.xlsx 问题 -->   followed by a Markdown table
        (or nothing, the first time): the sheet as the office sees it, empty columns left out;
        a number after the sheet's name shows only that many rows

    <!-- problems:begin --> … <!-- problems:end -->   the table of every problem in messages.py

A new command in the guide is one marker line: the script adds the ```text block. Commands run as
subprocesses with a fixed terminal width and no colour; the temporary folder is cut from
paths, so they read as the officer's relative paths. Pictures (docs/img/) are made from the
real outputs: a form through LibreOffice (soffice → PDF → pdftoppm) and the digest through
headless Chromium; docs/img/manifest.json records a fingerprint of what they depend on.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GUIDE = ROOT / "docs" / "使用说明.md"
IMG = ROOT / "docs" / "img"
MANIFEST = IMG / "manifest.json"
COMMAND = "python docs/make_guide.py"
WIDTH = 100  # terminal columns the outputs are rendered at
HOME = "幸福家园"  # the folder the officer works in; the workspace is made inside it

# What the pictures are made from: a change to any of these makes the pictures stale.
PICTURE_SOURCES = ("templates/*.html", "pipeline/forms.py", "pipeline/digest.py", "pipeline/charts.py")

MARKER = re.compile(
    r"<!-- (?P<kind>run|step|list|sheet): (?P<arg>.+?) -->\n"
    r"(?:(?P<fence>```text\n)(?P<body>.*?)```\n|(?P<rows>(?:\|[^\n]*\n)+))?", re.S)
PROBLEMS = re.compile(r"(<!-- problems:begin -->\n).*?(<!-- problems:end -->)", re.S)


# -- the fingerprint of the pictures' sources ---------------------------------------------------
def picture_sources(root: Path = ROOT) -> list[Path]:
    files: list[Path] = []
    for pattern in PICTURE_SOURCES:
        files += sorted(root.glob(pattern))
    return files


def fingerprint(root: Path = ROOT) -> str:
    """sha256 over the pictures' sources (line endings folded) and the package version."""
    from pipeline import __version__

    h = hashlib.sha256(f"happyhome {__version__}\n".encode())
    for path in picture_sources(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return h.hexdigest()


# -- the problem table ----------------------------------------------------------------------------
FILE, SHEET = "整个文件", "单张工作表"
# code -> (where, what happened, what the office does). The words to forward to the assessor are
# the catalogue's own (pipeline/messages.py): the 问题 sheet shows them with the details filled in.
MEANING: dict[str, tuple[str, str, str]] = {
    "empty_file": (FILE, "文件大小为 0，常见于邮件附件没下载完整或网盘同步未完成。", "重新下载附件；仍为空则请评估人重发。"),
    "not_spreadsheet": (FILE, "文件不是电子表格：照片、截图、PDF、Word 文档，或改了扩展名的其他文件。", "转告评估人；若是误放进文件夹的其他材料，移出即可。"),
    "encrypted": (FILE, "评估人给文件加了打开密码。", "转告评估人取消密码后重发。"),
    "read_failed": (FILE, "文件格式能识别，但读取时出错（多为保存不完整或软件兼容问题）。", "转告评估人另存为 .xlsx 后重发。"),
    "old_format": (FILE, "Excel 95 或更早的格式，无法读取。", "转告评估人另存为 .xlsx 后重发。"),
    "too_big": (FILE, "某张工作表的行列范围远超评分表应有的大小。", "转告评估人使用下发的评分表填写。"),
    "corrupt": (FILE, "文件不完整或已损坏（如邮件附件截断）。", "先重新下载附件；仍不行请评估人重新保存后发送。"),
    "too_large": (FILE, "文件超过大小上限（[limits] max_file_mb，默认 50 MB）。", "转告评估人；评分表通常只有几十 KB。"),
    "zip_bomb": (FILE, "文件解压后异常巨大，可能是恶意文件，为安全起见没有打开。", "转告评估人重新保存后发送；不要自行打开该文件。"),
    "read_crashed": (FILE, "读取该文件时读取程序意外退出；其他文件不受影响。", "转告评估人另存为 .xlsx 后重发。"),
    "read_timeout": (FILE, "读取超过时间上限（[limits] max_seconds_per_file，默认 30 秒）。", "转告评估人另存为 .xlsx 后重发。"),
    "read_memory": (FILE, "读取所需内存超过上限（[limits] max_memory_mb）。", "转告评估人另存为 .xlsx 后重发。"),
    "too_many_sheets": (FILE, "工作表数量远超评分表应有的数量。", "转告评估人使用下发的评分表。"),
    "no_identity": (FILE, "看不出是谁、为哪个对象填的：隐藏的表单信息没了，各表顶部的身份信息也没了。", "请评估人用下发的原表重填；也可能是别的表格误放进了文件夹。"),
    "meta_tampered": (FILE, "隐藏的表单信息被改动过，无法确认来源。", "请评估人用下发的原表重新填写。"),
    "forged_form": (FILE, "评分表的办公室签名验证不通过：表格标识被改动过，或是其他工作区（其他办公室）生成的表。",
                    "不要计入；请评估人用本办公室下发的评分表重新填写。若是本办公室的表，检查是否换过办公室密钥（happyhome key 显示指纹）。"),
    "unsigned_form": (FILE, "旧版评分表：办公室密钥启用前下发，没有签名，无法确认来源，已照常收取。",
                      "通常无需处理；文件表的“验证”列显示“未签名”。今后下发的评分表都带签名。"),
    "unsigned_refused": (FILE, "评分表没有办公室签名，而本工作区设置了拒收无签名的表（collect.refuse_unsigned = true）。",
                         "请评估人用本办公室新下发的评分表重新填写。"),
    "no_office_key": (FILE, "本工作区还没有办公室密钥，无法确认评分表的来源，已照常收取。",
                      "运行 happyhome key 查看说明；下一次 happyhome forms 会创建密钥，之后下发的表都带签名。"),
    "wrong_system": (FILE, "这是另一套指标体系的评分表（如在收取社区时遇到实践区的表）。", "通常无需处理：收取另一套体系时会计入。"),
    "wrong_period": (FILE, "这是另一期的评分表（如用了上个月的表）。", "若确是上月的表，放入提示的文件夹；若评估人用旧表填了本月的分，请他用本月的表重填。"),
    "wrong_stage": (FILE, "这是另一阶段（遴选、督导、评估、验收）的评分表，放错了收取文件夹。", "按提示放入该阶段的文件夹（如 input/returned/2027-03-遴选/），在收取该阶段时计入。"),
    "old_structure": (FILE, "指标体系已更新，评估人用的是旧版评分表。", "给评估人发新生成的评分表。"),
    "unknown_assessor": (FILE, "表中的评估人编号不在名单中（名单改过，或用了别人的表）。", "核对名单；若名单漏了此人，补上后重新生成评分表。"),
    "no_subject_sheets": (FILE, "文件里一张评估对象工作表都没有（被删除或改名）。", "转告评估人使用下发的评分表。"),
    "missing_sheet": (FILE, "表单中某个评估对象的工作表被删掉了；其他对象照常计入。", "请评估人补交该对象的评分（用原表填写该页后重发）。"),
    "unknown_sender": (FILE, "happyhome fetch 从邮箱取回的文件，发件地址不在名单“评估人”表的邮箱列中（评估人用了别的邮箱，或他人代发）。", "核对表格中的评估人是否本人填写；必要时在名单中补上该邮箱。"),
    "duplicate_file": (FILE, "同一个文件收到了两次（内容完全相同，名字可能不同）。", "无需处理。"),
    "duplicate_of_rejected": (FILE, "与一份未通过的文件内容相同，同样未计入。", "按那份文件的问题处理。"),
    "same_scores": (FILE, "评分与已计入的完全相同（例如另存为 .ods 又发了一次）。", "无需处理。"),
    "sheet_unreadable": (SHEET, "这张工作表无法读取，其他工作表不受影响。", "转告评估人重新保存后发送。"),
    "sheet_too_long": (SHEET, "这张工作表行数远超评分表应有的行数。", "转告评估人使用下发的评分表。"),
    "unknown_subject": (SHEET, "工作表的评估对象编号不在名单中。", "核对名单和评分表是否同一版本。"),
    "not_assigned": (SHEET, "该评估对象没有分配给这位评估人（名单“分配”表中没有这一对）。", "若分配有误，改名单后重新生成评分表；否则告知评估人不必评这个对象。"),
    "duplicate_subject": (SHEET, "同一个评估对象在一个文件里出现了两张表。", "转告评估人只保留一张后重发。"),
    "identity_mismatch": (SHEET, "工作表顶部的身份信息（对象、评估人、期次）与隐藏的表单信息不符，多为复制粘贴了别的表。", "转告评估人用原表填写。"),
    "no_header": (SHEET, "找不到“编号…得分”表头行（表头被改或删除）。", "转告评估人不要改表头，用原表重填。"),
    "missing_item": (SHEET, "某个指标的评分行被删掉了。", "转告评估人不要删除指标行，用原表重填。"),
    "duplicate_item": (SHEET, "同一指标出现了两行（复制了行）。", "转告评估人删去多余的行后重发。"),
    "unknown_item": (SHEET, "有一行的编号不是本体系的指标编号（评估人自己加的行），该行被忽略，其余照常计入。", "一般无需处理。"),
    "blank_score": (SHEET, "有指标没有打分。", "转告评估人补填后重发。"),
    "not_a_number": (SHEET, "得分填的不是数字（如“四”“满分”“良好”）。", "转告评估人改为数字后重发。"),
    "error_value": (SHEET, "得分单元格显示 #VALUE! 等错误值。", "转告评估人直接填写数字后重发。"),
    "formula_no_value": (SHEET, "得分是公式，但文件没有保存计算结果（某些软件如此保存）。", "转告评估人直接填写数字后重发。"),
    "out_of_range": (SHEET, "得分超出 0 到满分的范围（例如想填 4.5 却填了 45）。", "转告评估人改正后重发。"),
    "normalised": (SHEET, "得分写法不规范但意思明确（全角数字、带“分”字、文本格式的数字），已按数字计入。", "无需处理。"),
    "missing_reason": (SHEET, "专家给的得分低于满分（[forms] reason_below_share 设定的比例），备注却是空的：扣分没有写理由。默认只提示，本表照常计入；[collect] missing_reason = \"error\" 时本表不计入。", "请评估人在备注中写明扣分理由后重新发送。"),
    "remark_cut": (SHEET, "备注超过长度上限（[limits] max_remark_chars），只保留了前面部分。", "一般无需处理；需要全文时向评估人索取。"),
    "superseded": (SHEET, "评估人后来又交了这个对象的评分，以保存时间较晚的一份为准，较早的一份保留在台账中。", "无需处理。"),
    "sheet_blank": (SHEET, "整张评估对象表的得分一项都没有填（催报信中把 19 个“未填写”合为这一条）。", "转告评估人把这张表填完后重发。"),
    "conflict_return": (SHEET, "催报信中对“冲突”的说法：评估人寄来两份保存时间相同、评分不同的文件。", "请评估人确认以哪份为准，重新保存（保存时间会更新）后只发那一份。"),
    "conflict": (SHEET, "同一评估人、同一对象有两份评分不同的文件，保存时间相同（精确到秒），无法判断以哪份为准，两份都未计入。", "问清评估人以哪份为准，把另一份从 input/returned/<期次>/ 移走，再运行 collect。"),
    "declared_conflict": (SHEET, "评估人在该对象工作表顶部的“回避”中选了“是”：与该对象有利益关系，声明回避，该表不评分。",
                          "不是错误，不必催收；用 happyhome assign --replace-declared 为该对象补一位评估人，再为其生成评分表。"),
    "problem_fixed": (SHEET, "此前的错误已由评估人重新提交的文件更正。", "无需处理，不必再催。"),
}
SEVERITY = {"error": "错误", "warning": "提示"}


def _text(value: object) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def problem_table() -> str:
    """The guide's table of every problem code, from the message catalogue itself."""
    from pipeline.messages import CATALOGUE, PHRASES

    missing = [code for code in CATALOGUE if code not in MEANING]
    if missing:
        raise SystemExit(f"docs/make_guide.py: explain these new problem codes in MEANING: {', '.join(missing)}")
    stale = [code for code in MEANING if code not in CATALOGUE]
    if stale:
        raise SystemExit(f"docs/make_guide.py: these codes are no longer in messages.py, remove them: {', '.join(stale)}")
    out = []
    for where in (FILE, SHEET):
        out += [f"**{where}的问题**", "",
                "| 问题表中的说法（“…”处是具体内容） | 级别 | 什么情况 | 办公室怎么做 | 代码 |",
                "|---|---|---|---|---|"]
        for code, (severity, template) in CATALOGUE.items():
            if MEANING[code][0] != where:
                continue
            words = template.replace("{where}", PHRASES["put_in_folder"].format(folder="input/returned/<期次>/"))
            words = re.sub(r"\{[a-z_]+\}", "…", words)
            _, meaning, action = MEANING[code]
            out.append(f"| {_cell(words)} | {SEVERITY[severity]} | {_cell(meaning)} | {_cell(action)} | `{code}` |")
        out.append("")
    return "\n".join(out)


# -- running the guide ------------------------------------------------------------------------------
@dataclass
class Ran:
    """One command the guide shows, as run."""

    command: str
    cwd: str  # relative to the officer's folder
    exit_code: int
    output: str
    seconds: float


class Walk:
    """The officer's folder in a temporary place, and what the guide's steps do in it."""

    def __init__(self, base: Path):
        self.home = base.resolve() / HOME
        self.home.mkdir(parents=True)
        self.cwd = self.home
        self.workspace: Path | None = None
        self.ran: list[Ran] = []
        self._plans = None
        self.period = ""  # the guide's round, set by the roster step

    # the officer's hands
    def step(self, arg: str) -> None:
        name, *rest = arg.split()
        if name == "cd":
            self.cwd = (self.cwd / rest[0]).resolve()
            if (self.cwd / "happyhome.toml").is_file():
                self.workspace = self.cwd
        elif name == "roster":
            self.period = rest[0]
            self._roster()
        elif name == "previous-month":
            self._previous_month()
        elif name == "returns":
            self._returns(rest[0])
        elif name == "mail":
            self._mail()
        else:
            raise SystemExit(f"{GUIDE.name}: unknown step {arg!r}")

    def _need_workspace(self):
        if self.workspace is None:
            raise SystemExit(f"{GUIDE.name}: a step needs the workspace: put <!-- step: cd DIR --> after init")
        from pipeline.config import Workspace

        return Workspace.open(self.workspace)

    def _roster(self) -> None:
        """The example programme of `happyhome demo --small`, as if typed into the roster."""
        from pipeline.config import CONFIG_NAME
        from pipeline.demo import SMALL, make_data
        from pipeline.roster import write_roster

        ws = self._need_workspace()
        config = ws.root / CONFIG_NAME
        text = config.read_text(encoding="utf-8").replace('contact = ""', 'contact = "项目办公室 010-6512 3456"', 1)
        # as in the demo, the example's assessors remark on weak items only: the 扣分理由 rule is off
        config.write_text(text.replace("reason_below_share = 1.0", "reason_below_share = 0", 1), encoding="utf-8")
        self.data = make_data(SMALL, end=self.period)
        write_roster(ws.path("roster"), self.data.subjects, self.data.assessors, self.data.pairs,
                     emails=self.data.emails)
        # The office key init drew is replaced by the demo's (drawn from its seed), so the forms and
        # the returns shown are the same bytes each time the guide is made. An example's key: no secret.
        import hashlib

        ws.path("key").write_bytes(hashlib.sha256(f"happyhome demo {self.data.seed}".encode()).digest())

    def _rounds(self):
        if self._plans is None:
            from pipeline.demo import plan_rounds
            from pipeline.roster import read_roster
            from pipeline.systems import load_system

            ws = self._need_workspace()
            self.roster = read_roster(ws.path("roster"))
            self.systems = [load_system("zone"), load_system("community")]
            self._plans = {p.period: p for p in plan_rounds(ws, self.data, self.roster, self.systems)}
        return self._plans

    def _previous_month(self) -> None:
        from pipeline.collect import collect
        from pipeline.demo import write_round_files
        from pipeline.lock import workspace_lock
        from pipeline.report import report

        ws = self._need_workspace()
        plan = self._rounds()[self.data.periods[0]]
        write_round_files([plan])
        with workspace_lock(ws):
            for system in reversed(self.systems):  # community first, as the demo does
                collect(ws, system, plan.period, None, self.roster, workers=1)
            for system in self.systems:
                report(ws, system, plan.period)

    def _mail(self) -> None:
        """The office's mailbox in [mail], as the demo has it; the guide only runs send --dry-run."""
        from pipeline.config import CONFIG_NAME
        from pipeline.demo import DEMO_IMAP, DEMO_SMTP

        config = self._need_workspace().root / CONFIG_NAME
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace('smtp = ""', f'smtp = "{DEMO_SMTP}"', 1)
                          .replace('imap = ""', f'imap = "{DEMO_IMAP}"', 1), encoding="utf-8")

    def _returns(self, period: str) -> None:
        """The returns only: the blank forms of this round are the guide's own `forms` output."""
        from pipeline.demo import write_round_files

        write_round_files([replace(self._rounds()[period], forms=[])])

    def listing(self, folder: str) -> str:
        base = self.cwd / folder
        rows = []
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
            rows.append(f"{stamp}  {path.stat().st_size:>8,}  {path.relative_to(base).as_posix()}")
        return "\n".join(rows)

    def sheet(self, arg: str) -> str:
        """A sheet of a workbook the guide made, as a Markdown table (columns with no value left out);
        `PATH SHEET N` shows its first N rows and how many there are."""
        from python_calamine import CalamineWorkbook

        words = arg.split(" ")
        limit = int(words.pop()) if words[-1].isdigit() else None
        path, name = " ".join(words[:-1]), words[-1]
        sheet = CalamineWorkbook.from_path(str(self.cwd / path)).get_sheet_by_name(name)
        rows = [[_text(v) for v in row] for row in sheet.to_python()]
        head, data = rows[0], [row for row in rows[1:] if any(row)]
        keep = [c for c in range(len(head)) if head[c] and any(row[c] for row in data)]
        if limit is not None and len(data) > limit:
            data = data[:limit] + [[f"…（共 {len(data)} 行）"] + [""] * (len(head) - 1)]
        table = [head, ["---"] * len(head)] + data
        return "\n".join("| " + " | ".join(_cell(row[c]) for c in keep) + " |" for row in table)

    # the terminal
    def run(self, command: str) -> Ran:
        args = shlex.split(command)
        if args[0] != "happyhome":
            raise SystemExit(f"{GUIDE.name}: only happyhome commands are run: {command!r}")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HAPPYHOME_", "COLUMNS", "LINES", "FORCE_COLOR"))}
        env.update(COLUMNS=str(WIDTH), LINES="50", NO_COLOR="1", TERM="dumb", PYTHONIOENCODING="utf-8",
                   PYTHONUTF8="1", HAPPYHOME_LANG="zh")
        started = time.perf_counter()
        proc = subprocess.run([*happyhome_command(), *args[1:]], cwd=self.cwd, env=env, capture_output=True,
                              text=True, encoding="utf-8", errors="replace", timeout=600)
        output = proc.stdout.rstrip()
        if proc.returncode != 0 and proc.stderr.strip():
            output = (output + "\n" + proc.stderr.rstrip()).strip()
        ran = Ran(command, self._relative(self.cwd) or ".", proc.returncode, self.normalise(output),
                  time.perf_counter() - started)
        self.ran.append(ran)
        return ran

    def _relative(self, path: Path) -> str:
        return "" if path == self.home else path.relative_to(self.home).as_posix()

    def normalise(self, text: str) -> str:
        """Cut the temporary folder: paths read as from the folder the command ran in."""
        lines = []
        for line in text.splitlines():
            for base in sorted({self.cwd, self.home}, key=lambda p: -len(str(p))):
                line = line.replace(str(base) + os.sep, "").replace(str(base), ".")
            lines.append(line.rstrip())
        return "\n".join(lines)


def happyhome_command() -> list[str]:
    """The `happyhome` script beside this interpreter (so --help says happyhome), else -m pipeline."""
    script = Path(sys.executable).parent / ("happyhome.exe" if os.name == "nt" else "happyhome")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline"]


def outline(text: str) -> list[str]:
    """The guide's headings and pictures: refilling its markers must leave them as they are."""
    return re.findall(r"^#+ .*$|!\[[^\]]*\]\([^)]*\)", text, re.M)


def walk(text: str, base: Path, on_run=None) -> tuple[str, Walk]:
    """Act on every marker of the guide in order; returns the guide with its blocks refilled."""
    w = Walk(base)
    out, last = [], 0
    for m in MARKER.finditer(text):
        out.append(text[last:m.start()])
        last = m.end()
        kind, arg = m["kind"], m["arg"].strip()
        if kind == "step":
            w.step(arg)
            out.append(m.group(0))
            continue
        if kind == "sheet":
            out.append(f"<!-- {kind}: {arg} -->\n{w.sheet(arg)}\n")
            continue
        if kind == "run":
            ran = w.run(arg)
            on_run and on_run(ran)
            body = ran.output
        else:
            body = w.listing(arg)
        # (a table just below a command's marker is the prose's own: kept)
        out.append(f"<!-- {kind}: {arg} -->\n```text\n{body}\n```\n{m['rows'] or ''}")
    out.append(text[last:])
    return "".join(out), w


# -- pictures -------------------------------------------------------------------------------------------
def form_pictures(form: Path, scratch: Path) -> dict[str, Path]:
    """The form's 填表说明 page and its first subject sheet's first page, as LibreOffice prints them."""
    soffice = shutil.which("soffice")
    if not soffice or not shutil.which("pdftoppm"):
        raise SystemExit("the form's pictures need LibreOffice (soffice) and poppler-utils (pdftoppm)")
    scratch.mkdir(parents=True, exist_ok=True)
    subprocess.run([soffice, f"-env:UserInstallation={(scratch / 'lo-profile').as_uri()}", "--headless",
                    "--convert-to", "pdf", "--outdir", str(scratch), str(form)],
                   check=True, capture_output=True, timeout=300)
    pdf = scratch / (form.stem + ".pdf")
    pages = {"form-guide.png": 1, "form-sheet.png": _first_page_with(pdf, "评估人编号")}
    made = {}
    for name, page in pages.items():
        stem = scratch / name.removesuffix(".png")
        subprocess.run(["pdftoppm", "-png", "-r", "70", "-f", str(page), "-l", str(page), "-singlefile",
                        str(pdf), str(stem)], check=True, capture_output=True, timeout=120)
        made[name] = stem.with_suffix(".png")
    return made


def _first_page_with(pdf: Path, text: str) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info)[1])
    for page in range(1, pages + 1):
        words = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), str(pdf), "-"],
                               capture_output=True, text=True, check=True).stdout
        if text in words:
            return page
    raise SystemExit(f"no page of {pdf.name} shows {text!r}")


# The digest's parts pictured: file name -> (the section it starts at, None: the page's top;
# where it stops: before a section, before the nth subject card, or None: at the page's end).
DIGEST_PARTS = {
    "digest-top.png": (None, "subjects"),
    "digest-cards.png": ("subjects", 7),  # two rows of three cards show what a card holds
    "digest-end.png": ("flags", None),
}


def digest_pictures(digest: Path, scratch: Path) -> dict[str, Path]:
    """The digest in a 1,400 px wide headless Chromium with the network cut off, as tests see it:
    its top (headline, ranking, chart), a few subject cards, and its end (flags to method)."""
    from tests.chromium import Browser, find_chromium

    chromium = find_chromium()
    if not chromium:
        raise SystemExit("the digest's pictures need Chromium (Debian: apt-get install chromium)")
    made = {}
    with Browser(chromium, scratch / "chromium-profile", width=1400, height=1800) as browser:
        browser.offline()
        browser.open(digest.as_uri())
        height = browser.evaluate("document.documentElement.scrollHeight")
        # A section's top is its heading's (the h2 just before it).
        tops = browser.evaluate(
            "Object.fromEntries(Array.from(document.querySelectorAll('section[id]')).map(s => {"
            " const h = s.previousElementSibling && s.previousElementSibling.tagName === 'H2'"
            " ? s.previousElementSibling : s;"
            " return [s.id, Math.floor(h.getBoundingClientRect().top + window.scrollY) - 12]; }))")
        for name, (first, stop) in DIGEST_PARTS.items():
            top = 0 if first is None else tops[first]
            if isinstance(stop, int):  # a digest with fewer cards is pictured down to its flags
                bottom = browser.evaluate(
                    f"(c => c ? Math.floor(c.getBoundingClientRect().top + window.scrollY) - 4 : null)"
                    f"(document.querySelectorAll('article.card')[{stop - 1}])") or tops["flags"]
            else:
                bottom = tops[stop] if stop else height
            data = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                clip={"x": 0, "y": top, "width": 1400, "height": bottom - top, "scale": 1})["data"]
            out = scratch / name
            out.write_bytes(base64.b64decode(data))
            made[name] = out
    return made


def pictures(workspace: Path, scratch: Path, period: str) -> dict[str, Path]:
    forms = sorted((workspace / "output" / "forms" / period / "community").glob("*.xlsx"))
    digest = workspace / "output" / period / "digest-community.html"
    if not forms or not digest.is_file():
        raise SystemExit(f"the guide made no community form or digest for {period}: nothing to picture")
    made = {**form_pictures(forms[0], scratch / "form"), **digest_pictures(digest, scratch)}
    IMG.mkdir(parents=True, exist_ok=True)
    for name, path in made.items():
        shutil.copyfile(path, IMG / name)
    MANIFEST.write_text(json.dumps({
        "made_by": COMMAND,
        "fingerprint": fingerprint(),
        "sources": [p.relative_to(ROOT).as_posix() for p in picture_sources()] + ["pipeline.__version__"],
        "images": {name: {"bytes": (IMG / name).stat().st_size,
                          "sha256": hashlib.sha256((IMG / name).read_bytes()).hexdigest()} for name in sorted(made)},
    }, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return {name: IMG / name for name in made}


# -- main ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-pictures", action="store_true", help="refill the outputs and the table only")
    parser.add_argument("--keep", type=Path, help="build the example in this (new) folder and keep it")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    text = GUIDE.read_text(encoding="utf-8")
    text = PROBLEMS.sub(lambda m: m[1] + problem_table() + m[2], text)

    def report(ran: Ran) -> None:
        print(f"{ran.exit_code:>3}  {ran.seconds:5.1f} s  [{ran.cwd}] {ran.command}", flush=True)

    with tempfile.TemporaryDirectory(prefix="happyhome-guide-") as tmp:
        base = args.keep or Path(tmp)
        text, w = walk(text, base, on_run=report)
        failed = [r for r in w.ran if r.exit_code != 0]
        if failed:
            for r in failed:
                print(f"failed ({r.exit_code}): {r.command}\n{r.output}", file=sys.stderr)
            return 1
        if outline(text) != outline(GUIDE.read_text(encoding="utf-8")):
            print("refilling the markers changed the guide's headings or pictures: not written", file=sys.stderr)
            return 1
        GUIDE.write_text(text, encoding="utf-8")
        print(f"wrote {GUIDE.relative_to(ROOT)} ({len(w.ran)} command outputs)")
        if not args.no_pictures:
            if w.workspace is None:
                raise SystemExit("the guide never entered its workspace: no pictures")
            for name, path in pictures(w.workspace, base / "pictures", w.period).items():
                print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB)")
            print(f"wrote {MANIFEST.relative_to(ROOT)}")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
