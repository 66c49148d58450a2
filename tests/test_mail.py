"""`happyhome send` and `happyhome fetch` against real servers on 127.0.0.1 (tests/mailservers.py):
aiosmtpd for SMTP, dovecot for IMAP. Forms are filled with openpyxl as an assessor would, mailed
back the way Chinese mail clients encode them, fetched, collected, and the scores read back."""

from __future__ import annotations

import base64
import io
import sqlite3
import zipfile
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import openpyxl
import pytest

from conftest import PAIRS, SUBJECTS, fill_form, run
from mailservers import PASSWORD, USER, Dovecot, SmtpServer, make_cert
from pipeline.config import Workspace
from pipeline.ledger import Ledger
from pipeline.mail import attachment_name, decode_text, saved_name, spreadsheets_in
from pipeline.reader import Limits
from pipeline.roster import write_roster
from pipeline.systems import load_system

PERIOD = "2026-11"
SYSTEM = load_system("community")
COMMUNITIES = ("C001", "C002", "C003")
ASSESSORS = [  # 编号, 姓名, 单位, 联系方式, 省份, 城市, 区县, 邮箱 (王芳 has none)
    ("E01", "张敏", "浙江工业大学", "13800000001", "", "", "", "zhangmin@example.org"),
    ("E02", "李强", "四川大学", "13800000002", "", "", "", "liqiang@example.org"),
    ("E03", "王芳", "武汉市社工联", "13800000003", "", "", "", ""),
]


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path]:
    return make_cert(tmp_path / "tls")


@pytest.fixture
def office(workspace: Path, certs, monkeypatch) -> Path:
    """The workspace with e-mail addresses in the roster, the round's forms made, the password set."""
    write_roster(workspace / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, PAIRS)
    run(workspace, "forms", "--system", "community", "--period", PERIOD)
    monkeypatch.setenv("HAPPYHOME_MAIL_PASSWORD", PASSWORD)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")  # no keyring, as on CI
    return workspace


def set_mail(root: Path, **values: str) -> None:
    """Write [mail] settings into the workspace's happyhome.toml."""
    toml = root / "happyhome.toml"
    text = toml.read_text(encoding="utf-8")
    head, _, rest = text.partition("\n[mail]\n")
    lines = rest.splitlines()
    for key, value in values.items():
        lines = [f"{key} = {value!r}".replace("'", '"') if line.startswith(f"{key} =") else line for line in lines]
    toml.write_text(head + "\n[mail]\n" + "\n".join(lines) + "\n", encoding="utf-8")


def forms(root: Path) -> dict[str, Path]:
    out = root / "output" / "forms" / PERIOD / "community"
    return {p.name.split("_")[2]: p for p in sorted(out.glob("*.xlsx"))}


def answers(assessor: str) -> dict[str, dict[str, float]]:
    a = int(assessor[1:])
    return {s: {item.code: item.max - ((a + n + k) % 3) * 0.5 for k, item in enumerate(SYSTEM.items)}
            for n, s in enumerate(COMMUNITIES)}


def send(root: Path, *args: str, expect: int = 0):
    return run(root, "send", "--system", "community", "--period", PERIOD, *args, expect=expect)


def fetch(root: Path, *args: str, expect: int = 0):
    return run(root, "fetch", "--system", "community", "--period", PERIOD, *args, expect=expect)


def sent_rows(root: Path) -> list[tuple]:
    conn = sqlite3.connect(root / "ledger" / "happyhome.sqlite")
    try:
        return conn.execute("SELECT assessor, recipient, status, attachment, answer FROM mail_sent ORDER BY id").fetchall()
    finally:
        conn.close()


def reply(sender: str, subject_gbk: str, files: list[tuple[str, bytes]], how: str = "rfc2047") -> bytes:
    """A reply as Chinese mail clients send it: a GBK subject and attachment names encoded `how`:
    rfc2047 (=?GBK?B?…?= inside quotes), rfc2231 (filename*=), or raw (8-bit GBK bytes)."""
    boundary = "----=_NextPart_happyhome"
    subject = "=?GBK?B?" + base64.b64encode(subject_gbk.encode("gbk")).decode() + "?="
    head = (f"From: =?GBK?B?{base64.b64encode('评估人'.encode('gbk')).decode()}?= <{sender}>\r\n"
            f"To: {USER}\r\nSubject: {subject}\r\nDate: Mon, 30 Nov 2026 10:00:00 +0800\r\n"
            f"Message-ID: <{abs(hash((sender, subject_gbk, tuple(n for n, _ in files))))}@client.example>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n").encode()
    body = (f"--{boundary}\r\nContent-Type: text/plain; charset=\"gbk\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.b64encode("老师您好，评分表已填好，请查收。".encode("gbk")).decode() + "\r\n").encode()
    for name, data in files:
        if how == "rfc2047":
            words = "=?GBK?B?" + base64.b64encode(name.encode("gbk")).decode() + "?="
            params = f'name="{words}"'.encode(), f'filename="{words}"'.encode()
        elif how == "rfc2231":
            quoted = "".join(f"%{b:02X}" for b in name.encode("utf-8"))
            params = f"name*=UTF-8''{quoted}".encode(), f"filename*=UTF-8''{quoted}".encode()
        else:
            params = b'name="' + name.encode("gbk") + b'"', b'filename="' + name.encode("gbk") + b'"'
        body += (f"--{boundary}\r\n".encode() + b"Content-Type: application/octet-stream; " + params[0] + b"\r\n"
                 + b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; " + params[1] + b"\r\n\r\n"
                 + base64.encodebytes(data).replace(b"\n", b"\r\n") + b"\r\n")
    return head + body + f"--{boundary}--\r\n".encode()


def gbk_zip(members: dict[str, bytes]) -> bytes:
    """A .zip as zip tools on Chinese Windows write it: member names in GBK, no UTF-8 flag."""
    buffer = io.BytesIO()
    placeholders = {}
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for n, (name, data) in enumerate(members.items()):
            raw = name.encode("gbk")
            placeholder = (f"m{n}_" + "x" * len(raw))[:len(raw)]
            placeholders[placeholder.encode()] = raw
            archive.writestr(placeholder, data)
    out = buffer.getvalue()
    for placeholder, raw in placeholders.items():
        out = out.replace(placeholder, raw)
    return out


# -- send ---------------------------------------------------------------------------------------
def test_send_fetch_collect_round_trip(office: Path, certs) -> None:
    cert, key = certs
    with SmtpServer(cert, key, implicit=True) as smtp, Dovecot(cert, key) as imap:
        set_mail(office, smtp=smtp.url, imap=imap.url, cafile=str(cert), from_name="某某区民政局")
        made = forms(office)
        out = send(office).output
        # one message per assessor with an address, their own workbook attached, never another's
        assert sorted(rcpt[0] for _, rcpt, _ in smtp.received) == ["liqiang@example.org", "zhangmin@example.org"]
        for mail_from, (rcpt,), msg in smtp.received:
            code = "E01" if rcpt.startswith("zhangmin") else "E02"
            name = dict((r[0], r[1]) for r in ASSESSORS)[code]
            assert mail_from == USER and msg["To"].addresses[0].display_name == name
            assert msg["From"].addresses[0].display_name == "某某区民政局"
            assert msg["Subject"] == f"2026-11 {SYSTEM.name}督导评分：请填写评分表（{name}）"
            (attachment,) = list(msg.iter_attachments())
            assert attachment.get_filename() == made[code].name  # RFC 2231: the Chinese name arrives whole
            assert attachment.get_content() == made[code].read_bytes()
            text = msg.get_body(("plain",)).get_content()
            assert f"{name}老师" in text and "C001 湖滨街道东坡路社区" in text and "2026年11月25日" in text
        assert "E03 王芳" in out and "邮箱" in out  # no address: listed, the others still went
        assert [(a, r, s) for a, r, s, *_ in sent_rows(office)] == [
            ("E01", "zhangmin@example.org", "sent"), ("E02", "liqiang@example.org", "sent")]
        assert smtp.logins == [(USER, True)]

        # a second send sends nothing: both were sent this form already
        again = send(office).output
        assert len(smtp.received) == 2 and "已发送 0 封" in again and "2 封此前已发送" in again

        # the replies: E01 from the roster's address (GBK names as encoded words), E02 zipped with
        # GBK member names from an address not in the roster, the same E01 file once more, a photo
        one = fill_form(made["E01"], answers("E01"), save_as=office / "e01.xlsx").read_bytes()
        two = fill_form(made["E02"], answers("E02"), save_as=office / "e02.xlsx").read_bytes()
        imap.append(reply("zhangmin@example.org", "回复：评分表（张敏）", [("张敏 评分表.xlsx", one),
                                                                        ("现场照片.jpg", b"\xff\xd8\xff")]))
        imap.append(reply("li.qiang@qq.com", "评分表 李强", [("李强评分.zip", gbk_zip({"评分表_李强.xlsx": two,
                                                                                     "说明.txt": b"hi"}))],
                          how="raw"))
        imap.append(reply("zhangmin@example.org", "再发一次", [("张敏 评分表（再发）.xlsx", one)], how="rfc2231"))
        before = imap.flags()
        out = fetch(office, "--collect").output
        assert imap.flags() == before and not any("Seen" in f for f in before)  # nothing marked read
        assert imap.count() == 3  # nothing moved or deleted
        returned = sorted(p.name for p in (office / "input" / "returned" / PERIOD).iterdir())
        assert len(returned) == 2
        assert any(n.endswith("_zhangmin@example.org_张敏 评分表.xlsx") for n in returned), returned
        assert any(n.endswith("_li.qiang@qq.com_李强评分.zip_评分表_李强.xlsx") for n in returned), returned
        assert "现场照片.jpg" in out and "说明.txt" in out  # listed and ignored
        assert "重复" in out and "li.qiang@qq.com" in out
        # collected: the scores are the assessors' own
        with Ledger(office / "ledger" / "happyhome.sqlite") as ledger:
            scores = ledger.accepted_scores(PERIOD, "community")
        got = {(r.assessor, r.subject, r.item): r.score for r in scores.itertuples()}
        want = {(a, s, i): v for a in ("E01", "E02") for s, items in answers(a).items() for i, v in items.items()}
        assert got == want
        # the sender not in the roster is noted in the collection report, the file still counted
        book = openpyxl.load_workbook(office / "output" / PERIOD / "collection-community.xlsx", read_only=True)
        rows = [[c for c in r] for r in book["文件"].iter_rows(values_only=True)]
        noted = [r for r in rows if r[0] and "李强" in r[0]]
        assert noted and "发件人不在名单" in noted[0][7] and noted[0][2] == "已接收"
        assert not [r for r in rows if r[0] and "张敏" in r[0] and "发件人不在名单" in (r[7] or "")]
        problems = [r for r in book["问题"].iter_rows(values_only=True) if r[4] and "发件人不在名单" in r[4]]
        assert len(problems) == 1

        # a re-run fetches nothing new
        out = fetch(office).output
        assert "0 封新邮件" in out and "3 封此前已取" in out
        assert len(list((office / "input" / "returned" / PERIOD).iterdir())) == 2


def test_failures_are_reported_and_a_rerun_sends_only_them(office: Path, certs) -> None:
    write_roster(office / "input" / "roster.xlsx", SUBJECTS,
                 ASSESSORS[:2] + [ASSESSORS[2][:-1] + ("wangfang@example.org",)], PAIRS)
    cert, key = certs
    with SmtpServer(cert, key, implicit=True) as smtp:
        set_mail(office, smtp=smtp.url, cafile=str(cert))
        smtp.drop.add("zhangmin@example.org")     # the line goes dead during 张敏's message
        smtp.refuse.add("liqiang@example.org")    # 李强's address is refused
        out = send(office, expect=1).output
        assert [rcpt for _, (rcpt,), _ in smtp.received] == ["wangfang@example.org"]  # the others still went
        assert "E01 张敏 <zhangmin@example.org>：连接中断" in out
        assert "E02 李强 <liqiang@example.org>：550 5.1.1 <liqiang@example.org>: 用户不存在" in out
        assert [(a, s) for a, _, s, *_ in sent_rows(office)] == [("E01", "failed"), ("E02", "failed"), ("E03", "sent")]
        assert "再运行同一命令" in out
        smtp.refuse.clear()
        out = send(office).output  # only what failed
        assert sorted(rcpt for _, (rcpt,), _ in smtp.received[1:]) == ["liqiang@example.org", "zhangmin@example.org"]
        assert "已发送 2 封" in out
        send(office)
        assert len(smtp.received) == 3  # and then nothing
        # --resend and --to: one assessor, again
        send(office, "--to", "E02", "--resend")
        assert [rcpt for _, (rcpt,), _ in smtp.received[3:]] == ["liqiang@example.org"]
        # forms made again (--force) after E03's subjects changed: the form changed, so it goes out
        # again without --resend (remade unchanged within the same second, it would be the same bytes)
        write_roster(office / "input" / "roster.xlsx", SUBJECTS,
                     ASSESSORS[:2] + [ASSESSORS[2][:-1] + ("wangfang@example.org",)],
                     [p for p in PAIRS if p != ("E03", "C003")])
        run(office, "forms", "--system", "community", "--period", PERIOD, "--force")
        send(office, "--to", "E03")
        assert [rcpt for _, (rcpt,), _ in smtp.received[4:]] == ["wangfang@example.org"]


def test_starttls_and_the_certificate_check(office: Path, certs) -> None:
    cert, key = certs
    with SmtpServer(cert, key, implicit=False) as smtp:
        set_mail(office, smtp=smtp.url)  # no cafile: the server's own certificate is not trusted
        out = send(office, expect=1).output
        assert "证书" in out and "cafile" in out and not smtp.received
        set_mail(office, cafile=str(cert))
        send(office)
        assert len(smtp.received) == 2


def test_wrong_password_and_no_password(office: Path, certs, monkeypatch) -> None:
    cert, key = certs
    with SmtpServer(cert, key) as smtp, Dovecot(cert, key) as imap:
        set_mail(office, smtp=smtp.url, imap=imap.url, cafile=str(cert))
        monkeypatch.setenv("HAPPYHOME_MAIL_PASSWORD", "wrong")
        out = send(office, expect=2).output
        assert "拒绝" in out and "授权码" in out and "HAPPYHOME_MAIL_PASSWORD" in out and not smtp.received
        assert sent_rows(office) == []
        out = fetch(office, expect=2).output
        assert "授权码" in out and "HAPPYHOME_MAIL_PASSWORD" in out
        monkeypatch.delenv("HAPPYHOME_MAIL_PASSWORD")
        out = send(office, expect=2).output  # no terminal to ask on: say how to give it
        assert "HAPPYHOME_MAIL_PASSWORD" in out and USER in out


def test_dry_run_writes_eml_and_sends_nothing(office: Path) -> None:
    set_mail(office, from_address="office@example.org")
    out = send(office, "--dry-run").output
    folder = office / "output" / PERIOD / "mail"
    files = sorted(folder.glob("*.eml"))
    assert [p.name for p in files] == ["community-form-E01-张敏.eml", "community-form-E02-李强.eml"]
    msg = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert msg["To"].addresses[0].addr_spec == "zhangmin@example.org"
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_content() == forms(office)["E01"].read_bytes()
    assert "未发送" in out
    assert not (office / "ledger" / "happyhome.sqlite").exists() or sent_rows(office) == []
    (folder / "说明.txt").write_text("the office's own note", encoding="utf-8")
    send(office, "--dry-run", "--to", "E02")  # the folder shows what this send would send, nothing older
    assert sorted(p.name for p in folder.iterdir()) == ["community-form-E02-李强.eml", "说明.txt"]


def test_send_refuses_without_forms_and_with_another_assessors_form(workspace: Path, monkeypatch) -> None:
    write_roster(workspace / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, PAIRS)
    set_mail(workspace, from_address="office@example.org")
    out = send(workspace, "--dry-run", expect=2).output
    assert "happyhome forms" in out
    assert "E09" in send(workspace, "--dry-run", "--to", "E09", expect=2).output  # nobody of that 编号
    run(workspace, "forms", "--system", "community", "--period", PERIOD)
    made = forms(workspace)
    one, two = made["E01"].read_bytes(), made["E02"].read_bytes()
    made["E01"].write_bytes(two)  # someone copied 李强's form over 张敏's
    made["E02"].write_bytes(one)
    out = send(workspace, "--dry-run", expect=2).output
    assert made["E01"].name in out and "E02" in out
    assert not (workspace / "output" / PERIOD / "mail").exists()  # nothing written, nothing sent


def test_letters_by_mail(office: Path, certs) -> None:
    cert, key = certs
    made = forms(office)
    folder = office / "input" / "returned" / PERIOD
    folder.mkdir(parents=True)
    fill_form(made["E01"], answers("E01"), save_as=folder / "e01.xlsx")
    run(office, "collect", "--system", "community", "--period", PERIOD)
    with SmtpServer(cert, key) as smtp:
        set_mail(office, smtp=smtp.url, cafile=str(cert))
        out = send(office, "--letters").output
        # 张敏 owes nothing; 李强 is mailed his letter, nothing attached; 王芳 has no address
        assert [rcpt for _, (rcpt,), _ in smtp.received] == ["liqiang@example.org"]
        msg = smtp.received[0][2]
        assert not list(msg.iter_attachments())
        text = msg.get_body(("plain",)).get_content()
        assert "李强老师" in text and "C001 湖滨街道东坡路社区" in text
        assert msg["Subject"].endswith("待办事项（李强）")
        assert "E03 王芳" in out
        send(office, "--letters")
        assert len(smtp.received) == 1  # the same letter is not sent twice


def test_fetch_move_to_and_since(office: Path, certs) -> None:
    cert, key = certs
    one = fill_form(forms(office)["E01"], answers("E01"), save_as=office / "e01.xlsx").read_bytes()
    with Dovecot(cert, key) as imap:
        set_mail(office, imap=imap.url, cafile=str(cert))
        imap.append(reply("zhangmin@example.org", "评分表", [("评分表.xlsx", one)]))
        out = fetch(office, "--since", "2099-01-01").output  # nothing that recent
        assert "0 封新邮件" in out and imap.count() == 1
        set_mail(office, imap=imap.starttls_url)  # the same mailbox over imap:// with STARTTLS
        out = fetch(office, "--move-to", "已收取").output
        assert imap.count() == 0 and imap.count("已收取") == 1
        assert len(list((office / "input" / "returned" / PERIOD).iterdir())) == 1


# -- the pure parts -------------------------------------------------------------------------------
def test_names_as_chinese_clients_encode_them() -> None:
    data = b"PK\x03\x04"
    for how in ("rfc2047", "rfc2231", "raw"):
        msg = message_from_bytes(reply("a@b.cn", "回复", [("评分表_张敏（修改）.xlsx", data)], how=how),
                                 policy=policy.default)
        (found,) = [f for f in spreadsheets_in(msg, Limits()) if f.data is not None]
        assert found.name == "评分表_张敏（修改）.xlsx", how
        assert decode_text(msg["Subject"]) == "回复"
    assert decode_text("=?gb18030?B?" + base64.b64encode("评分".encode("gb18030")).decode() + "?=") == "评分"
    built = EmailMessage()
    built.add_attachment(b"x", maintype="application", subtype="octet-stream", filename="第一季度 评分表.xlsx")
    assert attachment_name(next(built.iter_attachments())) == "第一季度 评分表.xlsx"


def test_zip_attachments_are_bounded() -> None:
    limits = Limits(max_file_mb=1, max_unzipped_mb=2, max_ratio=50)
    bomb = gbk_zip({"大.xlsx": b"\0" * 3_000_000, "小.xlsx": b"PK" + b"ok" * 10})
    msg = EmailMessage()
    msg.add_attachment(bomb, maintype="application", subtype="zip", filename="回复.zip")
    found = {f.name: f for f in spreadsheets_in(msg, limits)}
    assert found["回复.zip/大.xlsx"].data is None and "max_ratio" in found["回复.zip/大.xlsx"].reason
    assert found["回复.zip/小.xlsx"].data == b"PK" + b"ok" * 10
    broken = EmailMessage()
    broken.add_attachment(b"not a zip", maintype="application", subtype="zip", filename="坏.zip")
    (f,) = spreadsheets_in(broken, limits)
    assert f.data is None and f.reason


def test_saved_names_are_safe() -> None:
    from datetime import datetime

    name = saved_name(datetime(2026, 11, 30, 9, 5, 1), "a/b@c.cn", "../../评分表:张敏.XLSX")
    assert name == "20261130-090501_a_b@c.cn__._评分表_张敏.xlsx"
    assert "/" not in name


def test_roster_email_column_is_checked(workspace: Path) -> None:
    bad = [ASSESSORS[0][:-1] + ("not an address",), *ASSESSORS[1:]]
    write_roster(workspace / "input" / "roster.xlsx", SUBJECTS, bad, PAIRS)
    out = run(workspace, "forms", "--system", "community", "--period", PERIOD, expect=3).output
    assert "邮箱“not an address”不是有效的电子邮件地址" in out


def test_mail_settings_are_checked(workspace: Path) -> None:
    set_mail(workspace, smtp="smtps://user:secret@host:465")  # a password in the file is refused
    out = send(workspace, "--dry-run", expect=2).output
    assert "[mail] smtp" in out
    ws = Workspace.open(workspace)
    assert ws["mail"]["mailbox"] == "INBOX"
    set_mail(workspace, smtp="", subject="{round}{deadline}")  # an unknown placeholder
    assert "[mail] subject" in send(workspace, "--dry-run", expect=2).output


class MemoryKeyring:
    """A keyring backend that keeps passwords in memory: the keyring API as a desktop's behaves."""

    @staticmethod
    def make():
        from keyring.backend import KeyringBackend

        class Backend(KeyringBackend):
            priority = 1
            stored: dict = {}

            def get_password(self, service, username):
                return self.stored.get((service, username))

            def set_password(self, service, username, password):
                self.stored[(service, username)] = password

            def delete_password(self, service, username):
                self.stored.pop((service, username), None)

        return Backend()


def test_password_asked_once_then_kept_in_the_keyring(office: Path, certs, monkeypatch) -> None:
    import keyring

    from pipeline.mail import send_round
    from pipeline.roster import read_roster

    cert, key = certs
    monkeypatch.delenv("HAPPYHOME_MAIL_PASSWORD")
    backend = MemoryKeyring.make()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        with SmtpServer(cert, key) as smtp:
            set_mail(office, smtp=smtp.url, cafile=str(cert))
            ws, system = Workspace.open(office), SYSTEM
            roster = read_roster(ws.path("roster"))
            asked = []
            result = send_round(ws, system, PERIOD, roster, to=("E01",),
                                ask=lambda prompt: asked.append(prompt) or PASSWORD)
            assert [t.status for t in result.tried] == ["sent"] and len(asked) == 1 and USER in asked[0]
            assert backend.stored == {("happyhome", f"{USER}@127.0.0.1"): PASSWORD}  # kept after it logged in
            result = send_round(Workspace.open(office), system, PERIOD, roster, to=("E02",), ask=None)
            assert [t.status for t in result.tried] == ["sent"]  # from the keyring, nobody asked
            assert len(smtp.received) == 2 and len(asked) == 1
    finally:
        keyring.set_keyring(previous)


def test_returns_keep_the_time_the_mail_arrived(office: Path, certs) -> None:
    """A return's file carries the server's arrival time, which collect reads as when it came in."""
    import imaplib
    from datetime import datetime

    cert, key = certs
    one = fill_form(forms(office)["E01"], answers("E01"), save_as=office / "e01.xlsx").read_bytes()
    with Dovecot(cert, key) as imap:
        set_mail(office, imap=imap.url, cafile=str(cert))
        arrived = datetime(2026, 11, 26, 9, 30, 0).astimezone()  # a day after the deadline
        conn = imap.client()
        conn.append("INBOX", None, imaplib.Time2Internaldate(arrived), reply("zhangmin@example.org", "迟交", [("评分表.xlsx", one)]))
        conn.logout()
        fetch(office)
    (saved,) = (office / "input" / "returned" / PERIOD).iterdir()
    assert saved.name.startswith("20261126-093000_zhangmin@example.org_")
    assert abs(saved.stat().st_mtime - arrived.timestamp()) < 1
    run(office, "collect", "--system", "community", "--period", PERIOD)
    with Ledger(office / "ledger" / "happyhome.sqlite") as ledger:
        (received,) = ledger.files(PERIOD, "community").received_at.tolist()
    assert received == "2026-11-26T09:30:00"


def test_a_ledger_made_before_mail_gains_its_tables(tmp_path: Path, monkeypatch) -> None:
    import pipeline.ledger.sqlite as module

    path = tmp_path / "ledger.sqlite"
    before = len(module.MIGRATIONS) - 1
    monkeypatch.setattr(module, "MIGRATIONS", module.MIGRATIONS[:before])
    monkeypatch.setattr(module, "SCHEMA_VERSION", before)
    Ledger(path).close()
    monkeypatch.undo()
    with Ledger(path) as ledger:
        assert ledger.mail_sent(PERIOD, "community", "form") == {} and ledger.mail_fetched_ids(PERIOD) == set()
        ledger.add_mail_sent({"period": PERIOD, "system": "community", "assessor": "E01", "kind": "form",
                              "recipient": "a@b.cn", "message_id": "<1@x>", "sent_at": "2026-11-02T09:00:00",
                              "attachment_sha256": "ab", "status": "sent"})
        assert ledger.mail_sent(PERIOD, "community", "form") == {"E01": {"ab"}}
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == module.SCHEMA_VERSION == before + 1
    conn.close()
