"""The officer's guide (docs/使用说明.md) stays true, as the README does (test_docs.py).

Its commands name real commands and options and run; its problem table lists every problem in
messages.py; its pictures exist and are as new as the code that draws them. What goes stale is
remade by `python docs/make_guide.py`.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import click
import pytest

from pipeline.cli import main
from pipeline.messages import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
import make_guide  # noqa: E402

GUIDE_PATH = ROOT / "docs" / "使用说明.md"
GUIDE = GUIDE_PATH.read_text(encoding="utf-8")
REMAKE = "run `python docs/make_guide.py` and commit docs/"

# Options the guide may name before they exist (while a branch adding them is open): (command,
# option) -> whether the option takes a value. Empty: every option it names is checked.
PENDING: dict[tuple[str, str], bool] = {}

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def split(line: str) -> list[str]:
    """A command line as PowerShell or a POSIX shell splits it: quotes, # comments, and
    Windows paths whose backslashes are not escapes."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split, lexer.escape, lexer.commenters = True, "", "#"
    return list(lexer)


def shown_commands() -> list[str]:
    """Every happyhome command line the guide tells the officer to type: its run markers and
    the lines of its command blocks (not the ```text blocks of output)."""
    lines = [m["arg"].strip() for m in make_guide.MARKER.finditer(GUIDE) if m["kind"] == "run"]
    for lang, body in FENCE.findall(GUIDE):
        if lang != "text":
            lines += [line.strip() for line in body.splitlines() if line.strip().startswith("happyhome")]
    return lines


def inline_commands() -> list[str]:
    """happyhome commands quoted in the prose (`happyhome collect --help`)."""
    prose = FENCE.sub("", GUIDE)
    return sorted({m.strip() for m in re.findall(r"`(happyhome [^`]*)`", prose)})


def problems_with(line: str, whole: bool = True) -> list[str]:
    """What in a happyhome command line is not a command, option, choice or argument happyhome
    knows; with `whole`, also the required options it leaves out."""
    args = split(line)
    assert args and args[0] == "happyhome", line
    command: click.Command = main
    name, found, seen, positional, helped = "happyhome", [], set(), 0, False
    i = 1
    while i < len(args):
        word = args[i]
        if word.startswith("-") and len(word) > 1:
            option, eq, value = word.partition("=")
            if option in ("-h", "--help"):
                helped = True
                i += 1
                continue
            param = next((p for p in command.params if isinstance(p, click.Option)
                          and option in (*p.opts, *p.secondary_opts)), None)
            if param is None:
                pending = PENDING.get((name.split()[1] if " " in name else "", option))
                if pending is None:
                    found.append(f"{name}: no option {option}")
                    # its value, if it seems to have one, is not an argument as well
                    pending = i + 1 < len(args) and not args[i + 1].startswith("-")
                i += 2 if pending and not eq else 1
                continue
            seen.add(param.name)
            if param.is_flag or param.count:
                i += 1
                continue
            if not eq:
                if i + 1 >= len(args):
                    found.append(f"{name}: {option} needs a value")
                    break
                value = args[i + 1]
                i += 1
            if isinstance(param.type, click.Choice) and value not in param.type.choices:
                found.append(f"{name}: {option} {value!r} is not one of {', '.join(param.type.choices)}")
            i += 1
            continue
        if isinstance(command, click.Group):
            sub = command.commands.get(word)
            if sub is None:
                found.append(f"{name}: no command {word!r}")
                break
            command, name, seen, positional = sub, f"{name} {word}", set(), 0
        else:
            arguments = [p for p in command.params if isinstance(p, click.Argument)]
            room = sum(1 if p.nargs > 0 else 10**6 for p in arguments)
            positional += 1
            if positional > room:
                found.append(f"{name}: unexpected argument {word!r}")
        i += 1
    if whole and not helped and not isinstance(command, click.Group):
        found += [f"{name}: {max(p.opts, key=len)} is required" for p in command.params
                  if isinstance(p, click.Option) and p.required and p.name not in seen]
    return found


def test_the_guide_shows_commands():
    assert len([m for m in make_guide.MARKER.finditer(GUIDE) if m["kind"] == "run"]) >= 8
    assert len(shown_commands()) > len(inline_commands()) > 3


@pytest.mark.parametrize("line", shown_commands())
def test_every_command_shown_is_a_real_command_with_real_options(line):
    assert problems_with(line) == [], line


@pytest.mark.parametrize("line", inline_commands())
def test_every_command_quoted_in_the_prose_names_real_commands_and_options(line):
    assert problems_with(line, whole=False) == [], line


def test_the_checker_catches_what_it_should():
    assert problems_with("happyhome colect --system community --period 2026-11") == ["happyhome: no command 'colect'"]
    assert problems_with("happyhome status --system community --period 2026-11 --exprt x.xlsx") == [
        "happyhome status: no option --exprt"]
    assert problems_with("happyhome report --system zone --period 2026-11 --by 街道") == [
        "happyhome report: --by '街道' is not one of 省份, 城市, 区县"]
    assert problems_with("happyhome forms --period 2026-11") == ["happyhome forms: --system is required"]
    assert problems_with("happyhome -w D:\\幸福家园\\round-2026 systems show community --full  # 注释") == []
    assert problems_with("happyhome init a b") == ["happyhome init: unexpected argument 'b'"]


def test_every_run_marker_has_its_output():
    empty = [m["arg"] for m in make_guide.MARKER.finditer(GUIDE)
             if m["kind"] in ("run", "list", "sheet") and not (m["body"] or m["rows"] or "").strip()]
    assert not empty, f"no output under {empty}: {REMAKE}"


def test_the_problem_table_lists_every_problem_code():
    table = make_guide.PROBLEMS.search(GUIDE)
    assert table, "the guide lost its <!-- problems:begin --> … <!-- problems:end --> markers"
    listed = re.findall(r"\| `([a-z_]+)` \|$", table[0], re.M)
    assert sorted(listed) == sorted(CATALOGUE), f"the problem table is not the catalogue's: {REMAKE}"


def test_the_problem_table_is_the_one_the_catalogue_makes():
    """A message changed in messages.py changes the guide's table once the script runs."""
    table = make_guide.PROBLEMS.search(GUIDE)
    assert table[0] == table[1] + make_guide.problem_table() + table[2], f"the problem table is stale: {REMAKE}"


def test_every_image_the_guide_shows_exists():
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", GUIDE)
    assert len(links) >= 4
    for link in links:
        path = GUIDE_PATH.parent / link
        assert path.is_file() and path.stat().st_size > 1000, f"{link} is missing: {REMAKE}"
        assert path.stat().st_size < 600_000, f"{link} is too big for the repository"


def test_the_pictures_are_as_new_as_the_code_that_draws_them():
    manifest = json.loads(make_guide.MANIFEST.read_text(encoding="utf-8"))
    assert manifest["fingerprint"] == make_guide.fingerprint(), (
        "the form, the digest or their templates changed since the guide's pictures were made: " + REMAKE)
    for name in manifest["images"]:
        assert (make_guide.IMG / name).is_file(), f"{name} is in the manifest but not in docs/img: {REMAKE}"


def test_the_fingerprint_follows_the_picture_sources(tmp_path):
    for relative in ("templates/digest.html", "pipeline/forms.py", "pipeline/digest.py", "pipeline/charts.py"):
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / relative).read_bytes())
    before = make_guide.fingerprint(tmp_path)
    (tmp_path / "templates" / "digest.html").write_text("changed", encoding="utf-8")
    assert make_guide.fingerprint(tmp_path) != before
    crlf = (tmp_path / "pipeline" / "forms.py")
    crlf.write_bytes(crlf.read_bytes().replace(b"\n", b"\r\n"))  # a Windows checkout
    (tmp_path / "templates" / "digest.html").write_bytes((ROOT / "templates" / "digest.html").read_bytes())
    assert make_guide.fingerprint(tmp_path) == before


def test_every_link_inside_the_guide_points_at_a_heading():
    """Anchors as GitHub makes them: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", GUIDE), re.M)
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
    links = re.findall(r"\]\(#([^)]+)\)", GUIDE)
    assert len(links) >= 10
    assert [link for link in links if link not in anchors] == []


def test_the_readme_first_screen_links_the_guide():
    first_screen = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:20])
    assert "](docs/使用说明.md)" in first_screen


@pytest.mark.slow
def test_the_guide_runs_from_top_to_bottom(tmp_path):
    """Every step and command of the guide, in order, on the example it builds: each exits 0,
    and no temporary path leaks into what the guide shows."""
    text, walk = make_guide.walk(GUIDE, tmp_path)
    commands = [m["arg"].strip() for m in make_guide.MARKER.finditer(GUIDE) if m["kind"] == "run"]
    assert [r.command for r in walk.ran] == commands
    for ran in walk.ran:
        assert ran.exit_code == 0, f"{ran.command}\n{ran.output}"
        assert ran.output.strip(), ran.command
        assert str(tmp_path) not in ran.output, ran.command
    assert make_guide.PROBLEMS.search(text)
    assert make_guide.outline(text) == make_guide.outline(GUIDE)  # the prose is left as it is
    assert (walk.workspace / "output" / walk.period / "digest-community.html").is_file()
