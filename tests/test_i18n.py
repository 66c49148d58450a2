"""Terminal words: Simplified Chinese by default, English on request, catalogues complete and agreeing.

The catalogue is checked the way sphinx checks its own: extract the marked strings again and
compare them with the .po; compile the .po and compare it with the shipped .mo.
"""

from __future__ import annotations

import gettext
import io
import os
import re
import string
import subprocess
import sys
from pathlib import Path

import click
import openpyxl
import pytest
from click.testing import CliRunner
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from pipeline import i18n
from pipeline.cli import main, wrap_text
from pipeline.i18n import set_language
from tests.conftest import PAIRS, fill_form, run

ROOT = Path(__file__).resolve().parents[1]
PERIOD = "2026-11"

babel = pytest.importorskip("babel")  # a test extra: extraction and compilation


# -- the catalogue -----------------------------------------------------------------------------
def ids(catalog) -> set:
    return {m.id for m in catalog if m.id}


def test_every_marked_string_has_a_chinese_translation_and_no_entry_is_stale():
    extracted, po = i18n.extract(), i18n.read_po()
    missing = ids(extracted) - ids(po)
    stale = ids(po) - ids(extracted)
    assert not missing, f"not in the .po (run python -m pipeline.i18n update): {sorted(map(str, missing))}"
    assert not stale, f"in the .po but no longer in the code (run python -m pipeline.i18n update): {sorted(map(str, stale))}"
    assert i18n.untranslated(po) == [], "entries without a (non-fuzzy) Chinese translation"
    assert len(po) > 150


def test_extraction_sees_calls_and_the_help_of_every_command():
    extracted = ids(i18n.extract())
    assert "Nothing to collect: {folder} does not exist." in extracted  # _() in cli.py
    assert "Cannot write {path}: {reason}." in extracted  # _() in a library module
    assert "Show tracebacks." in extracted  # N_() in a decorator

    def commands(group):
        for command in group.commands.values():
            yield command
            if isinstance(command, click.Group):
                yield from commands(command)
    for command in commands(main):
        assert __import__("inspect").cleandoc(command.help) in extracted, command.name
        for param in command.params:
            if getattr(param, "help", None):
                assert param.help in extracted, (command.name, param.name)


def test_no_message_is_built_before_it_is_looked_up():
    """`_(f"…{x}")` or `_("a" + b)` cannot be extracted nor found in the catalogue: use named fields."""
    built = re.compile(r"\bN?_\(\s*(?:[rbu]?f[\"']|[\"'][^\"']*[\"']\s*[+%])")
    for path in (ROOT / "pipeline").rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not built.search(line), f"{path.name}:{number}: {line.strip()}"


def fields(text: str) -> list[tuple]:
    """The str.format fields (name, conversion, spec) and %-placeholders of a message, sorted."""
    found = [(name, conversion or "", spec or "") for _, name, spec, conversion in string.Formatter().parse(text)
             if name is not None]
    found += [(m,) for m in re.findall(r"%(?:\(\w+\))?[sdrf]", text)]
    return sorted(found)


def interface_words(text: str) -> list[str]:
    """Option names and `commands` a translation must keep verbatim."""
    return sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)) | set(re.findall(r"`[^`]+`", text)))


def test_msgid_and_msgstr_agree_on_placeholders_options_and_examples():
    for message in i18n.read_po():
        if not message.id:
            continue
        if isinstance(message.id, (tuple, list)):  # Chinese has one form; it serves every n
            singular, plural = message.id
            for translated in message.string:
                assert fields(translated) == fields(plural), (message.id, translated)
            continue
        assert fields(message.string) == fields(message.id), (message.id, message.string)
        assert interface_words(message.string) == interface_words(message.id), (message.id, message.string)
        for example in re.findall(r"Example: (.+)", message.id):
            assert f"示例：{example}" in message.string, (message.id, message.string)


def test_the_shipped_mo_is_the_compiled_po():
    from babel.messages.mofile import write_mo

    compiled = io.BytesIO()
    write_mo(compiled, i18n.read_po(), use_fuzzy=False)
    compiled.seek(0)
    fresh = gettext.GNUTranslations(compiled)
    with open(i18n.MO, "rb") as fh:
        shipped = gettext.GNUTranslations(fh)
    assert shipped._catalog == fresh._catalog, "run python -m pipeline.i18n update"


def test_click_words_in_the_catalogue_are_the_installed_clicks():
    source = "".join(p.read_text(encoding="utf-8") for p in Path(click.__file__).parent.glob("*.py"))
    checked = 0
    for message in i18n.read_po():
        first = message.id[0] if isinstance(message.id, (tuple, list)) else message.id
        if first in i18n.CLICK_MESSAGES:
            checked += 1
            for msgid in message.id if isinstance(message.id, (tuple, list)) else (message.id,):
                assert f'"{msgid}"' in source, f"the installed click no longer says {msgid!r}"
    assert checked == len(i18n.CLICK_MESSAGES)


def test_language_choice_ignores_the_server_locale(monkeypatch):
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")
    assert set_language() == "zh" and i18n._("accepted") == "已接收"
    monkeypatch.setenv("HAPPYHOME_LANG", "en")
    assert set_language() == "en" and i18n._("accepted") == "accepted"
    assert set_language("zh") == "zh" and i18n._("accepted") == "已接收"  # --lang wins over the variable
    assert [i18n.normalise(x) for x in ("zh_CN", "zh-cn", "EN", "en_US.UTF-8", "fr", None)] == \
        ["zh", "zh", "en", "en", "zh", "zh"]


# -- the terminal ------------------------------------------------------------------------------
def invoke(*args, env=None, expect=0):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False, terminal_width=80,
                                prog_name="happyhome")
    assert result.exit_code == expect, result.output
    return result.output


def test_help_is_chinese_by_default_and_english_on_request():
    zh = invoke("--help")
    assert "用法: happyhome [OPTIONS] COMMAND [ARGS]..." in zh and "选项:" in zh and "命令:" in zh
    assert "显示本帮助并退出。" in zh and "列出指标体系。" in zh and "Show this message" not in zh
    assert "用法:" in invoke("--help", env={"HAPPYHOME_LANG": "zh_CN.UTF-8"})
    for en in (invoke("--lang", "en", "--help"), invoke("--help", env={"HAPPYHOME_LANG": "en"}),
               invoke("--help", env={"HAPPYHOME_LANG": "en_GB"})):
        assert "Usage: happyhome [OPTIONS] COMMAND [ARGS]..." in en and "Options:" in en and "Commands:" in en
        assert "Show this message and exit." in en and "List the indicator systems." in en
        assert not re.search(r"[\u4e00-\u9fff]{2,}", en.replace("社区高质量发展幸福家园行动", "")), en


def test_command_help_translates_its_text_and_keeps_the_example_and_options():
    zh = invoke("collect", "--help")
    assert "收取交回的评分表" in zh and "示例：happyhome collect --system community --period 2026-11" in zh
    assert "[必填]" in zh and "显示本帮助并退出。" in zh
    en = invoke("--lang", "en", "collect", "--help")
    assert "Take in returned workbooks" in en and "Example: happyhome collect --system community --period 2026-11" in en
    assert "[required]" in en
    options = lambda text: sorted(set(re.findall(r"(?<![\w-])--?[a-z][a-z-]*", text)))  # noqa: E731
    assert options(zh) == options(en)


def test_help_lines_fit_the_terminal_in_display_cells():
    for args in (["--help"], ["collect", "--help"], ["report", "--help"], ["demo", "--help"], ["status", "--help"]):
        for line in invoke(*args).splitlines():
            assert cell_len(line) <= 80, line


def test_wrapping_breaks_between_chinese_characters_but_never_inside_a_path():
    path = "output/rollup/rollup-community-2026-06_2026-11.xlsx"
    text = "汇总各月评估：按月列出总分、变化、排名、提示和回收情况，写入 " + path + "，范围内没有数据的月份显示为无数据。"
    wrapped = wrap_text(text, 30).splitlines()
    assert len(wrapped) > 2 and any(path in line for line in wrapped)
    assert "".join(wrapped).replace(" ", "") == text.replace(" ", "")
    assert all(cell_len(line) <= 30 for line in wrapped if path not in line)
    # a line break in the source between Chinese characters joins without a space; between words, with one
    assert wrap_text("向评估人\n发放评分表 and\nmore", 78, preserve_paragraphs=True) == "向评估人发放评分表 and more"


def test_click_errors_are_chinese_by_default():
    out = invoke("collect", expect=2)
    assert "错误：缺少选项 '--system'" in out and "运行 'happyhome collect --help' 查看帮助。" in out
    assert "用法: happyhome collect" in out
    out = invoke("--lang", "en", "collect", expect=2)
    assert "Error: Missing option '--system'" in out and "Try 'happyhome collect --help' for help." in out
    out = invoke("report", "--system", "community", "--period", PERIOD, "--method", "median", expect=2)
    assert "'--method' 的取值无效：'median' 不是可选值 'mean', 'trimmed' 之一。" in out
    assert "没有选项 '--nonesuch'" in invoke("--nonesuch", expect=2)
    # click names the kind of a path at import; it is worded in the language of the run
    assert "路径 'nonesuch' 不存在。" in invoke("collect", "--system", "community", "--period", PERIOD, "nonesuch", expect=2)
    out = invoke("--lang", "en", "collect", "--system", "community", "--period", PERIOD, "nonesuch", expect=2)
    assert "Path 'nonesuch' does not exist." in out


def test_tables_line_up_with_chinese_text():
    table = Table("编号", "名称", "总分", title="创新实践社区评价指标体系 2026-11")
    table.add_row("C001", "湖滨街道东坡路社区", "90.00")
    table.add_row("C002", "Yulin 玉林街道黉门街社区", "88.5")
    console = Console(file=io.StringIO(), width=60, color_system=None)
    console.print(table)
    lines = [line for line in console.file.getvalue().splitlines() if line.strip()][1:]  # the title is centred
    assert len({cell_len(line) for line in lines}) == 1, lines


def test_systems_table_is_chinese_and_aligned_and_english_on_request(tmp_path):
    zh = run(tmp_path, "systems").output
    assert "指标数" in zh and "对象类型" in zh
    table = [line for line in zh.splitlines() if line[:1] in "┏┃┡│└"]
    assert len(table) == 6 and len({cell_len(line) for line in table}) == 1, zh
    en = run(tmp_path, "--lang", "en", "systems").output
    assert "subject type" in en and "指标数" not in en


def test_a_round_in_chinese_then_in_english(workspace):
    out = run(workspace, "forms", "--system", "community", "--period", PERIOD).output
    assert "已生成 3 份评分表（共 9 张对象表），位于 " + str(workspace / "output" / "forms" / PERIOD / "community") in out
    out = run(workspace, "collect", "--system", "community", "--period", PERIOD).output
    assert f"没有可收取的文件：{workspace / 'input' / 'returned' / PERIOD} 不存在。" in out
    table = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert any("已接收" in line for line in table) and len({cell_len(line) for line in table}) == 1
    out = run(workspace, "report", "--system", "community", "--period", PERIOD, expect=3).output
    assert "错误：本轮（创新实践社区评价指标体系 2026-11）还没有收取到任何评分表" in out
    en = run(workspace, "--lang", "en", "collect", "--system", "community", "--period", PERIOD).output
    assert "Nothing to collect:" in en and "accepted" in en and "Collection report:" in en
    en = run(workspace, "--lang", "en", "report", "--system", "community", "--period", PERIOD, expect=3).output
    assert "Error: The round (创新实践社区评价指标体系 2026-11) has no scoring sheet collected yet" in en


def test_paths_are_printed_whole_however_long(tmp_path):
    deep = tmp_path / ("很长的文件夹名称" * 4) / ("a-rather-long-folder-name-" * 3) / "ws"
    run(deep, "init", str(deep))
    out = run(deep, "status", "--system", "community", "--period", PERIOD, "--export", str(deep / "催收名单.xlsx")).output
    assert f"催收名单：{deep / '催收名单.xlsx'}（" in out  # on one line, longer than the terminal


def environment(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HAPPYHOME_LANG", "LANG", "LC_ALL", "LANGUAGE")}
    return {**env, "PYTHONIOENCODING": "utf-8", **extra}


@pytest.mark.parametrize("extra, chinese", [
    ({}, True),
    ({"LANG": "en_US.UTF-8", "LC_ALL": "en_US.UTF-8", "LANGUAGE": "en_US"}, True),
    ({"LANG": "en_US.UTF-8", "HAPPYHOME_LANG": "en"}, False),
    ({"HAPPYHOME_LANG": "zh"}, True),
])
def test_a_real_process_chooses_by_happyhome_lang_only(tmp_path, extra, chinese):
    ran = subprocess.run([sys.executable, "-m", "pipeline", "-w", str(tmp_path), "collect", "--period", PERIOD],
                         capture_output=True, text=True, encoding="utf-8", env=environment(**extra), cwd=ROOT,
                         timeout=120)
    assert ran.returncode == 2
    expected = "错误：缺少选项 '--system'" if chinese else "Error: Missing option '--system'"
    assert expected in ran.stderr, ran.stderr


# -- interface words stay as they are ------------------------------------------------------------
def interface(root: Path) -> dict:
    """What programs and people downstream rely on: files, sheet names, header cells, CSV columns."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".lock" not in p.name):
        rel = path.relative_to(root).as_posix()
        if path.suffix == ".xlsx":
            book = openpyxl.load_workbook(path, read_only=True)
            out[rel] = [(ws.title, [c for c in next(ws.iter_rows(values_only=True), ())][:30]) for ws in book.worksheets]
        elif path.suffix == ".csv":
            out[rel] = path.read_text(encoding="utf-8-sig").splitlines()[0]
        else:
            out[rel] = None
    return out


def play(root: Path, *lang: str) -> list[int]:
    from pipeline.roster import write_roster
    from tests.conftest import ASSESSORS, SUBJECTS

    codes = [run(root, *lang, "init", str(root)).exit_code]
    write_roster(root / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, PAIRS)
    codes.append(run(root, *lang, "forms", "--system", "community", "--period", PERIOD).exit_code)
    forms = sorted((root / "output" / "forms" / PERIOD / "community").glob("*.xlsx"))
    folder = root / "input" / "returned" / PERIOD
    folder.mkdir(parents=True)
    from pipeline.systems import load_system
    items = load_system("community").items
    for form in forms:
        fill_form(form, {s: {i.code: i.max for i in items} for s in ("C001", "C002", "C003")}, save_as=folder / form.name)
    codes.append(run(root, *lang, "collect", "--system", "community", "--period", PERIOD).exit_code)
    codes.append(run(root, *lang, "report", "--system", "community", "--period", PERIOD).exit_code)
    codes.append(run(root, *lang, "status", "--system", "community", "--period", PERIOD, "--export",
                     str(root / "output" / "chase.xlsx")).exit_code)
    codes.append(run(root, *lang, "forms", "--system", "community", "--period", PERIOD, expect=2).exit_code)
    codes.append(run(root, *lang, "report", "--system", "zone", "--period", PERIOD, expect=3).exit_code)
    return codes


@pytest.mark.slow
def test_files_sheets_headers_and_exit_codes_are_the_same_in_both_languages(tmp_path):
    zh_codes = play(tmp_path / "zh")
    en_codes = play(tmp_path / "en", "--lang", "en")
    assert zh_codes == en_codes == [0, 0, 0, 0, 0, 2, 3]
    zh, en = interface(tmp_path / "zh"), interface(tmp_path / "en")
    archived = lambda files: sum(1 for k in files if k.startswith("ledger/archive/"))  # noqa: E731  (named by content)
    assert archived(zh) == archived(en) == 3
    zh, en = ({k: v for k, v in files.items() if not k.startswith("ledger/archive/")} for files in (zh, en))
    assert zh == en and len(zh) > 10
    names = lambda group: sorted(group.commands)  # noqa: E731
    assert names(main) == ["amend", "assign", "collect", "demo", "fetch", "forms", "init", "key", "ledger", "report", "rollup",
                           "send", "status", "systems"]
