"""Forms out and returns in by e-mail: `happyhome send` and `happyhome fetch`.

Building a message is pure (`form_message`, `letter_message`: an EmailMessage from a Chinese
letter rendered from `templates/mail_form.txt` / `mail_letter.txt`), and so is taking the
spreadsheets out of a received one (`spreadsheets_in`); the network runs (`send_round`,
`fetch_round`) are apart from them.

The rules an office can rely on:

- One message per assessor, with that assessor's own workbook attached: the form is found by its
  file name and its hidden metadata must name the same assessor, or it is not sent.
- The password or 授权码 is never in happyhome.toml: HAPPYHOME_MAIL_PASSWORD, else the system
  keyring, else it is asked for once on a terminal (and kept in the keyring when there is one).
- Every message tried is in the ledger (mail_sent), sent or failed with the server's answer. A
  second send goes only to assessors who have not been sent the form as it is now (its sha256),
  so after a failure re-running sends just what failed; `resend` sends again anyway.
- fetch never changes the mailbox (EXAMINE, BODY.PEEK: nothing is marked read, moved or
  deleted) unless `move_to` names a folder. Each message is taken once a round (its Message-ID
  is in the ledger, mail_fetched); an attachment whose bytes were saved before is not saved again.
- Every spreadsheet attachment (also inside a .zip, bounded by [limits]) is saved into the
  round's returned folder as <date>_<sender>_<name>, with the time the server received the
  message as its modification time (collect reads that as when it arrived). Replies are
  matched to forms by the forms' own identity when collected, never by the sender; a sender
  not in the roster is noted in the collection report (发件人不在名单).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import imaplib
import io
import os
import re
import smtplib
import socket
import ssl
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from pipeline.atomic import atomic_path, check_writable
from pipeline.config import Workspace
from pipeline.errors import ConfigError, MailError, UsageError
from pipeline.i18n import _
from pipeline.names import safe_filename
from pipeline.reader import Limits
from pipeline.roster import Assessor, Roster
from pipeline.rounds import SUPERVISION, cli_args, split_key
from pipeline.systems import System

PASSWORD_ENV = "HAPPYHOME_MAIL_PASSWORD"
KEYRING_SERVICE = "happyhome"
SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
ZIP_MEMBERS_MAX = 200  # members of one .zip attachment looked at; a form return has a handful
FORM, LETTER = "form", "letter"
SENT, FAILED = "sent", "failed"
SAVED, DUPLICATE, IGNORED = "saved", "duplicate", "ignored"
RAW_NAME = re.compile(r'(?:file)?name\s*=\s*("[^"]*"|[^;\s]+)', re.IGNORECASE)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")


# -- settings ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Server:
    """One mail server from a URL of [mail]: smtps://user@host:465, imap://user@host:143 …"""

    url: str
    scheme: str
    user: str
    host: str
    port: int

    @property
    def implicit_tls(self) -> bool:
        return self.scheme in ("smtps", "imaps")

    @property
    def account(self) -> str:
        """The keyring's name for the login: user@host."""
        return f"{self.user}@{self.host}"


PORTS = {"smtps": 465, "smtp": 587, "imaps": 993, "imap": 143}


def parse_server(url: str, setting: str, kinds: tuple[str, str]) -> Server:
    """A [mail] smtp/imap URL as a Server; a ConfigError naming the setting when it cannot be one."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port or PORTS.get(parts.scheme, 0)
    except ValueError:
        port = 0
    user = unquote(parts.username or "")
    if parts.scheme not in kinds or not parts.hostname or not user or not port or parts.password:
        raise ConfigError(_("[mail] {setting} must look like {example} (no password in the file), found {value!r}")
                          .format(setting=setting, example=f"{kinds[0]}://user@host:{PORTS[kinds[0]]}", value=url))
    return Server(url, parts.scheme, user, parts.hostname, port)


@dataclass(frozen=True)
class MailSettings:
    smtp: Server | None
    imap: Server | None
    mailbox: str
    from_name: str
    from_address: str
    cafile: Path | None
    subject: str
    letter_subject: str
    timeout: float

    @classmethod
    def of(cls, ws: Workspace) -> "MailSettings":
        m = ws["mail"]
        smtp = parse_server(m["smtp"], "smtp", ("smtps", "smtp")) if m["smtp"].strip() else None
        imap = parse_server(m["imap"], "imap", ("imaps", "imap")) if m["imap"].strip() else None
        address = m["from_address"].strip() or (smtp.user if smtp and "@" in smtp.user else "")
        cafile = (ws.root / m["cafile"]).resolve() if m["cafile"].strip() else None
        if cafile is not None and not cafile.is_file():
            raise ConfigError(_("[mail] cafile: {path} does not exist").format(path=cafile))
        for name in ("subject", "letter_subject"):
            try:
                m[name].format(round="", name="")
            except (KeyError, IndexError, ValueError) as err:
                raise ConfigError(_("[mail] {setting} may use {{round}} and {{name}} only, found {value!r}")
                                  .format(setting=name, value=m[name])) from err
        if not m["mailbox"].strip():
            raise ConfigError(_("[mail] mailbox must name a folder, e.g. \"INBOX\""))
        return cls(smtp, imap, m["mailbox"].strip(), m["from_name"].strip() or ws["round"]["organiser"], address,
                   cafile, m["subject"], m["letter_subject"], float(m["timeout"]))

    def tls(self) -> ssl.SSLContext:
        """Certificates are always checked: the system's, plus [mail] cafile when set."""
        context = ssl.create_default_context()
        if self.cafile is not None:
            context.load_verify_locations(cafile=str(self.cafile))
        return context


# -- the password ------------------------------------------------------------------------------
@dataclass
class Password:
    value: str
    source: str  # env | keyring | prompt


def _keyring():
    """The keyring module with a usable backend, or None (headless machines have none)."""
    try:
        import keyring
        from keyring.backends.fail import Keyring as NoBackend
    except ImportError:  # pragma: no cover - a runtime dependency
        return None
    try:
        return None if isinstance(keyring.get_keyring(), NoBackend) else keyring
    except Exception:  # noqa: BLE001 - a broken keyring setup is the same as none
        return None


def get_password(server: Server, ask: Callable[[str], str] | None) -> Password:
    """HAPPYHOME_MAIL_PASSWORD, else the keyring's, else asked for (`ask`, given a prompt; None when
    no terminal is attached: then a ConfigError that says how to give it)."""
    value = os.environ.get(PASSWORD_ENV)
    if value:
        return Password(value, "env")
    ring = _keyring()
    if ring is not None:
        try:
            stored = ring.get_password(KEYRING_SERVICE, server.account)
        except Exception:  # noqa: BLE001 - keyring.errors.KeyringError and backend failures alike
            stored = None
        if stored:
            return Password(stored, "keyring")
    if ask is None:
        raise ConfigError(_("No password for the mailbox {account}: set {env} to its password or authorisation code "
                            "(授权码), or run happyhome on a terminal once to be asked for it.").format(
            account=server.account, env=PASSWORD_ENV))
    return Password(ask(_("Password or authorisation code (授权码) of {account}").format(account=server.account)),
                    "prompt")


def remember(server: Server, password: Password) -> bool:
    """Keep a password typed at the prompt in the keyring, once it has logged in; False when there
    is no keyring (it is asked for again next time)."""
    ring = _keyring()
    if password.source != "prompt" or ring is None:
        return False
    try:
        ring.set_password(KEYRING_SERVICE, server.account, password.value)
        return True
    except Exception:  # noqa: BLE001
        return False


def _login_failed(server: Server, answer: str) -> ConfigError:
    return ConfigError(_("The mail server {host} refused the login of {user} (wrong password or authorisation code?): "
                         "{answer}. Check {env} or the password kept in the keyring; many mailboxes (QQ, 163, "
                         "government mail) want an authorisation code (授权码) from their settings page, not the "
                         "login password.").format(host=server.host, user=server.user, answer=answer, env=PASSWORD_ENV))


def _unreachable(server: Server, err: Exception) -> MailError:
    return MailError(_("Cannot reach the mail server {host}:{port}: {error}").format(
        host=server.host, port=server.port, error=_why(err)))


def _why(err: Exception) -> str:
    if isinstance(err, smtplib.SMTPResponseException):
        text = err.smtp_error.decode("utf-8", "replace") if isinstance(err.smtp_error, bytes) else str(err.smtp_error)
        return f"{err.smtp_code} {text}".strip()
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return "; ".join(_why(smtplib.SMTPResponseException(code, text)) for code, text in err.recipients.values())
    if isinstance(err, (smtplib.SMTPServerDisconnected, ConnectionError, socket.timeout)):
        return _("the connection was dropped before the server confirmed the message ({error})").format(
            error=str(err) or type(err).__name__)
    if isinstance(err, ssl.SSLCertVerificationError):
        return _("the server's certificate is not trusted ({reason}); set [mail] cafile to the certificate that "
                 "signed it").format(reason=err.verify_message or err.reason)
    return str(err) or type(err).__name__


# -- messages ----------------------------------------------------------------------------------
def round_title(system: System, key: str) -> str:
    """2026-11 创新实践社区评价指标体系督导评分 (as letters name the round)."""
    period, stage = split_key(key) or (key, SUPERVISION)
    return f"{period} {system.name}{stage}评分"


def _sender(settings: MailSettings) -> str:
    if not settings.from_address:
        raise ConfigError(_("[mail] has no sender address: set from_address, or smtp with the mailbox's full "
                            "address as its user (smtps://office@example.org@smtp.example.org:465)."))
    return email.utils.formataddr((settings.from_name, settings.from_address))


def _new_message(settings: MailSettings, to: Assessor, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = _sender(settings)
    msg["To"] = email.utils.formataddr((to.name, to.email))
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid("happyhome", domain=settings.from_address.rpartition("@")[2] or None)
    msg["X-Happyhome-Assessor"] = to.code
    msg.set_content(body, charset="utf-8")
    return msg


def form_message(settings: MailSettings, ws: Workspace, system: System, key: str, assessor: Assessor,
                 subjects: list, form: Path, data: bytes, deadline: datetime) -> EmailMessage:
    """One assessor's message: the letter of templates/mail_form.txt and their workbook attached."""
    from pipeline.letters import text_environment

    title = round_title(system, key)
    body = text_environment().get_template("mail_form.txt").render(
        assessor=assessor, subjects=subjects, round=title, deadline=deadline, file=form.name,
        contact=ws["round"]["contact"], organiser=ws["round"]["organiser"], today=date.today())
    msg = _new_message(settings, assessor, settings.subject.format(round=title, name=assessor.name), body)
    msg.add_attachment(data, *XLSX_TYPE, filename=form.name)  # RFC 2231 for the Chinese name
    return msg


def letter_message(settings: MailSettings, system: System, key: str, assessor: Assessor, text: str) -> EmailMessage:
    """A chase or problem letter (pipeline.letters) as a message, nothing attached."""
    from pipeline.letters import text_environment

    title = round_title(system, key)
    body = text_environment().get_template("mail_letter.txt").render(letter=text, round=title)
    return _new_message(settings, assessor, settings.letter_subject.format(round=title, name=assessor.name), body)


# -- send --------------------------------------------------------------------------------------
@dataclass
class Outgoing:
    assessor: Assessor
    kind: str
    message: EmailMessage
    attachment: str  # the file name ('' for a letter)
    sha256: str      # of the attachment (of the letter's text)


@dataclass
class Tried:
    assessor: Assessor
    recipient: str
    message_id: str
    status: str  # sent | failed
    answer: str = ""
    attachment: str = ""


@dataclass
class SendResult:
    key: str
    kind: str
    dry_run: bool
    tried: list[Tried] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)  # --dry-run: the .eml files
    already: list[Assessor] = field(default_factory=list)     # sent this form before (not --resend)
    no_address: list[Assessor] = field(default_factory=list)  # no 邮箱 in the roster
    no_form: list[Assessor] = field(default_factory=list)     # their form is not in the forms folder
    folder: Path | None = None

    @property
    def sent(self) -> list[Tried]:
        return [t for t in self.tried if t.status == SENT]

    @property
    def failed(self) -> list[Tried]:
        return [t for t in self.tried if t.status == FAILED]


def _form_owner(path: Path) -> str | None:
    """The assessor code in a form's hidden metadata (None when it has none that verifies)."""
    from pipeline.collect import parse_meta
    from pipeline.forms import META_SHEET
    from pipeline.reader import UnreadableFile, read_workbook

    try:
        sheet = read_workbook(path).sheet(META_SHEET)
    except UnreadableFile:
        return None
    if sheet is None or sheet.error:
        return None
    meta, _problem = parse_meta(sheet.rows)
    return meta.assessor if meta else None


def plan_forms_mail(ws: Workspace, settings: MailSettings, system: System, key: str, roster: Roster,
                    chosen: list[str], sent_before: dict[str, set[str]], resend: bool, result: SendResult) -> list[Outgoing]:
    """The form messages of a round: one per chosen assessor with an address and a form."""
    from pipeline.forms import form_filename

    period, stage = split_key(key)
    folder = ws.forms_dir(key, system.id)
    assigned = roster.assignments(system.subject_type)
    if not folder.is_dir() or not any(folder.glob("*.xlsx")):
        raise UsageError(_("No forms of this round in {folder}: run `happyhome forms --system {system} {round}` "
                           "first.").format(folder=folder, system=system.id, round=cli_args(key)))
    deadline = ws.deadline(key)
    out = []
    for code in chosen:
        assessor = roster.assessors[code]
        if code not in assigned:
            continue
        path = folder / form_filename(period, system, assessor, stage)
        if not assessor.email:
            result.no_address.append(assessor)
            continue
        if not path.is_file():
            result.no_form.append(assessor)
            continue
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        if sha in sent_before.get(code, set()) and not resend:
            result.already.append(assessor)
            continue
        owner = _form_owner(path)
        if owner != code:  # never another's workbook, whatever its file name says
            raise UsageError(_("{path} is not {name}'s form (its metadata names {owner}): make the forms again with "
                               "`happyhome forms --force`.").format(path=path, name=assessor.name, owner=owner or "?"))
        subjects = [roster.subjects[s] for s in assigned[code]]
        msg = form_message(settings, ws, system, key, assessor, subjects, path, data, deadline)
        out.append(Outgoing(assessor, FORM, msg, path.name, sha))
    return out


def plan_letters_mail(ws: Workspace, settings: MailSettings, system: System, key: str, roster: Roster,
                      ledger, chosen: list[str], sent_before: dict[str, set[str]], resend: bool,
                      result: SendResult) -> list[Outgoing]:
    """The chase and problem letters of a round (as `status --letters` writes them), one message each."""
    from pipeline.letters import plan_letters, render_letter
    from pipeline.status import round_status

    status = round_status(ws, system, key, roster, ledger)
    out = []
    for letter in plan_letters(ws, status):
        if letter.assessor not in chosen:
            continue
        assessor = roster.assessors[letter.assessor]
        if not assessor.email:
            result.no_address.append(assessor)
            continue
        text = render_letter(letter)
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if sha in sent_before.get(assessor.code, set()) and not resend:
            result.already.append(assessor)
            continue
        out.append(Outgoing(assessor, LETTER, letter_message(settings, system, key, assessor, text), "", sha))
    return out


def send_round(ws: Workspace, system: System, key: str, roster: Roster, *, to: tuple[str, ...] = (),
               letters: bool = False, dry_run: bool = False, resend: bool = False,
               ask: Callable[[str], str] | None = None) -> SendResult:
    """Send a round's forms (or, with `letters`, its chase and problem letters), one message per
    assessor; with `dry_run`, write them as .eml files under output/<round>/mail/ instead."""
    from pipeline.ledger import Ledger
    from pipeline.lock import workspace_lock

    settings = MailSettings.of(ws)
    unknown = [code for code in to if code not in roster.assessors]
    if unknown:
        raise UsageError(_("--to: no assessor {codes} in the roster").format(codes=", ".join(unknown)))
    idle = [code for code in to if code not in roster.assignments(system.subject_type)]
    if idle:
        raise UsageError(_("--to: {codes} rate(s) no subject of {system} in the roster").format(
            codes=", ".join(idle), system=system.id))
    chosen = list(to) if to else list(roster.assessors)
    kind = LETTER if letters else FORM
    result = SendResult(key, kind, dry_run)
    if not dry_run and settings.smtp is None:
        raise ConfigError(_("[mail] smtp is not set in happyhome.toml: set it to the office's outgoing server, "
                            "e.g. smtps://office@example.org@smtp.example.org:465 (or use --dry-run)."))
    if dry_run:
        with Ledger.open(ws, reading=True) as ledger:
            outgoing = _plan(ws, settings, system, key, roster, ledger, kind, chosen, resend, result)
        result.folder = ws.period_output(key) / "mail"
        result.written = write_eml(outgoing, result.folder, system, kind)
        return result
    # One send at a time (and not beside a collect or a fetch): two runs would both mail the same form.
    with workspace_lock(ws), Ledger.open(ws) as ledger:
        outgoing = _plan(ws, settings, system, key, roster, ledger, kind, chosen, resend, result)
        if outgoing:
            _deliver(settings, outgoing, ledger, key, system, result, ask)
    return result


def _plan(ws: Workspace, settings: MailSettings, system: System, key: str, roster: Roster, ledger, kind: str,
          chosen: list[str], resend: bool, result: SendResult) -> list[Outgoing]:
    sent_before = ledger.mail_sent(key, system.id, kind)
    if kind == LETTER:
        return plan_letters_mail(ws, settings, system, key, roster, ledger, chosen, sent_before, resend, result)
    return plan_forms_mail(ws, settings, system, key, roster, chosen, sent_before, resend, result)


def write_eml(outgoing: list[Outgoing], folder: Path, system: System, kind: str = FORM) -> list[Path]:
    """Each message as <system>-<form|letter>-<编号>-<姓名>.eml, to open in a mail client and review.
    The folder shows what a send would send now: .eml files of an earlier dry run of the same
    system and kind (named by this function) are removed first; nothing else is touched."""
    check_writable(folder)
    for old in folder.glob(f"{system.id}-{kind}-*.eml"):
        old.unlink()
    paths = []
    for item in outgoing:
        name = safe_filename(f"{system.id}-{item.kind}-{item.assessor.code}-{item.assessor.name}") + ".eml"
        with atomic_path(folder / name) as tmp:
            tmp.write_bytes(item.message.as_bytes(policy=policy.SMTP))
        paths.append(folder / name)
    return paths


class _Smtp:
    """One SMTP session, opened again after the server drops it."""

    def __init__(self, settings: MailSettings, password: Password):
        self.settings, self.password, self.conn = settings, password, None

    def open(self) -> smtplib.SMTP:
        server, s = self.settings.smtp, self.settings
        try:
            if server.implicit_tls:
                conn = smtplib.SMTP_SSL(server.host, server.port, timeout=s.timeout, context=s.tls())
            else:
                conn = smtplib.SMTP(server.host, server.port, timeout=s.timeout)
                conn.ehlo()
                if not conn.has_extn("starttls"):
                    conn.quit()
                    raise ConfigError(_("The mail server {host}:{port} offers no encryption (STARTTLS): the password "
                                        "would travel in clear. Use its smtps:// port (usually 465).").format(
                        host=server.host, port=server.port))
                conn.starttls(context=s.tls())
            _smtp_login(conn, server.user, self.password.value)
        except smtplib.SMTPAuthenticationError as err:
            raise _login_failed(server, _why(err)) from err
        except (OSError, smtplib.SMTPException) as err:
            raise _unreachable(server, err) from err
        self.conn = conn
        return conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self.conn = None


def _smtp_login(conn: smtplib.SMTP, user: str, password: str) -> None:
    """LOGIN as smtplib does it, except that a non-ASCII user or password (which smtplib cannot
    encode) goes as UTF-8 in AUTH PLAIN (RFC 4616)."""
    if (user + password).isascii():
        conn.login(user, password)
        return
    conn.ehlo_or_helo_if_needed()
    token = base64.b64encode(b"\0" + user.encode("utf-8") + b"\0" + password.encode("utf-8")).decode("ascii")
    code, answer = conn.docmd("AUTH", "PLAIN " + token)
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, answer)


def _deliver(settings: MailSettings, outgoing: list[Outgoing], ledger, key: str, system: System,
             result: SendResult, ask: Callable[[str], str] | None) -> None:
    password = get_password(settings.smtp, ask)
    session = _Smtp(settings, password)
    session.open()  # a wrong password or an unreachable server stops the run before any message
    remember(settings.smtp, password)
    try:
        for item in outgoing:
            answer = ""
            try:
                conn = session.conn or session.open()
                refused = conn.send_message(item.message)
                if refused:
                    answer = _why(smtplib.SMTPRecipientsRefused(refused))
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as err:
                answer = _why(err)
                _reset(session)
            except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError, MailError) as err:
                answer = _why(err.__cause__ if isinstance(err, MailError) and err.__cause__ else err)
                session.conn = None  # opened again for the next message
            recipient = item.assessor.email
            tried = Tried(item.assessor, recipient, item.message["Message-ID"], FAILED if answer else SENT, answer,
                          item.attachment)
            result.tried.append(tried)
            ledger.add_mail_sent({"period": key, "system": system.id, "assessor": item.assessor.code,
                                  "kind": item.kind, "recipient": recipient, "message_id": tried.message_id,
                                  "sent_at": datetime.now().isoformat(timespec="seconds"),
                                  "attachment": item.attachment, "attachment_sha256": item.sha256,
                                  "status": tried.status, "answer": answer})
    finally:
        session.close()


def _reset(session: _Smtp) -> None:
    """After a refused message the session stays usable; RSET clears the half-made transaction."""
    try:
        session.conn.rset()
    except (OSError, smtplib.SMTPException, AttributeError):
        session.conn = None


# -- fetch -------------------------------------------------------------------------------------
def decode_text(value: str | None) -> str:
    """A header or file name as a person reads it: RFC 2047 words (=?GBK?B?…?=, also inside quotes,
    as Chinese mail clients send them) and raw 8-bit GBK/GB18030 bytes decoded."""
    if not value:
        return ""
    text = str(value)
    if any("\udc80" <= ch <= "\udcff" for ch in text):  # raw bytes the parser could not decode
        raw = text.encode("utf-8", "surrogateescape")
        for codec in ("utf-8", "gb18030"):
            try:
                text = raw.decode(codec)
                break
            except UnicodeDecodeError:
                continue
        else:
            text = raw.decode("gb18030", "replace")
    if "=?" in text:
        try:
            text = str(make_header(decode_header(text)))
        except (UnicodeDecodeError, LookupError, ValueError, email.errors.HeaderParseError):
            pass
    return text.replace("\r", "").replace("\n", "").strip()


def attachment_name(part: Message) -> str:
    """The file name of a part: RFC 2231 (filename*=), RFC 2047 and raw GBK bytes all read as Chinese."""
    name = part.get_filename()
    if name is None:
        name = part.get_param("name", header="content-type")
        if isinstance(name, tuple):  # an RFC 2231 value under the old API
            name = email.utils.collapse_rfc2231_value(name)
    if name and "\ufffd" in name:
        # Raw 8-bit bytes (GBK from many Chinese clients) were replaced when the header was parsed:
        # read the parameter again from the header as received, bytes kept as surrogates.
        for key, value in part.raw_items():
            found = RAW_NAME.search(value) if key.lower() in ("content-disposition", "content-type") else None
            if found:
                name = found.group(1)[1:-1] if found.group(1).startswith('"') else found.group(1)
                if key.lower() == "content-disposition":
                    break
    return decode_text(name)


def _zip_member_name(info: zipfile.ZipInfo) -> str:
    """A member's name: zip tools on Chinese Windows write GBK without the UTF-8 flag."""
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            name = name.encode("cp437").decode("gb18030")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name.replace("\\", "/").rsplit("/", 1)[-1]


@dataclass
class Found:
    """One file in a message: a spreadsheet to save, or something listed and ignored."""

    name: str  # as sent (a zip member: archive.zip/member.xlsx)
    data: bytes | None
    reason: str = ""  # why it is ignored ('' for a spreadsheet)


def spreadsheets_in(msg: Message, limits: Limits) -> list[Found]:
    """Every attachment of a message: spreadsheets (also inside .zip attachments) with their bytes,
    everything else with the reason it is ignored. Bounded by [limits] like any returned file."""
    cap = int(limits.max_file_mb * 1_000_000)
    out: list[Found] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        name = attachment_name(part)
        if not name and part.get_content_disposition() != "attachment":
            continue  # the message's own text
        name = name or _("(unnamed attachment)")
        suffix = Path(name).suffix.lower()
        if suffix not in SPREADSHEETS and suffix != ".zip":
            out.append(Found(name, None, _("not a spreadsheet")))
            continue
        data = part.get_payload(decode=True) or b""
        if len(data) > cap:
            out.append(Found(name, None, _("larger than {mb} MB").format(mb=f"{limits.max_file_mb:g}")))
        elif suffix == ".zip":
            out += _unzip(name, data, limits)
        else:
            out.append(Found(name, data))
    return out


def _unzip(name: str, data: bytes, limits: Limits) -> list[Found]:
    cap = int(limits.max_file_mb * 1_000_000)
    budget = int(limits.max_unzipped_mb * 1_000_000)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
        return [Found(name, None, _("a damaged .zip"))]
    out = []
    if len(members) > ZIP_MEMBERS_MAX:
        return [Found(name, None, _("a .zip of {n} files (at most {max} are looked at)").format(
            n=len(members), max=ZIP_MEMBERS_MAX))]
    for info in members:
        member = _zip_member_name(info)
        shown = f"{name}/{member}"
        if Path(member).suffix.lower() not in SPREADSHEETS or member.startswith(("~$", ".")):
            out.append(Found(shown, None, _("not a spreadsheet")))
            continue
        limit = min(cap, budget, max(info.compress_size, 1) * limits.max_ratio)
        try:
            with archive.open(info) as handle:  # the sizes in the header are not trusted: read at most the limit
                content = handle.read(int(limit) + 1)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError):
            out.append(Found(shown, None, _("cannot be unpacked (damaged or with a password)")))
            continue
        if len(content) > limit:
            out.append(Found(shown, None, _("inflates beyond the limits ([limits] max_file_mb, max_unzipped_mb, "
                                            "max_ratio)")))
            continue
        budget -= len(content)
        out.append(Found(shown, content))
    return out


def saved_name(when: datetime, sender: str, original: str) -> str:
    """<YYYYMMDD-HHMMSS>_<sender>_<original name>, safe on every file system, Chinese kept."""
    stem, suffix = os.path.splitext(original.replace("/", "_"))
    base = "_".join((f"{when:%Y%m%d-%H%M%S}", safe_filename(sender or "未知发件人", 60), safe_filename(stem, 120)))
    return safe_filename(base, 200) + suffix.lower()


@dataclass
class Fetched:
    """One attachment taken from a message."""

    sender: str
    subject: str
    received: datetime
    name: str           # as sent
    status: str         # saved | duplicate | ignored
    path: Path | None = None  # where it was saved (or, a duplicate, where its bytes were saved before)
    reason: str = ""
    known_sender: bool = True


@dataclass
class FetchResult:
    key: str
    folder: Path
    since: date
    messages: int = 0  # new messages read
    seen: int = 0      # messages taken by an earlier fetch
    items: list[Fetched] = field(default_factory=list)
    moved: int = 0

    def of(self, status: str) -> list[Fetched]:
        return [f for f in self.items if f.status == status]

    @property
    def unknown_senders(self) -> list[str]:
        return list(dict.fromkeys(f.sender for f in self.items if not f.known_sender))


def round_start(ws: Workspace, key: str, ledger) -> date:
    """Mail since the round began: its first form sent by happyhome, or the 1st of its month."""
    period = split_key(key)[0]
    first = date(int(period[:4]), int(period[5:7]), 1)
    sent = ledger.first_mail_sent(key)
    return min(first, datetime.fromisoformat(sent).date()) if sent else first


class _Imap:
    def __init__(self, settings: MailSettings, password: Password):
        server, s = settings.imap, settings
        try:
            if server.implicit_tls:
                conn = imaplib.IMAP4_SSL(server.host, server.port, ssl_context=s.tls(), timeout=s.timeout)
            else:
                conn = imaplib.IMAP4(server.host, server.port, timeout=s.timeout)
                if "STARTTLS" not in conn.capabilities:
                    conn.shutdown()
                    raise ConfigError(_("The mail server {host}:{port} offers no encryption (STARTTLS): the password "
                                        "would travel in clear. Use its imaps:// port (usually 993).").format(
                        host=server.host, port=server.port))
                conn.starttls(ssl_context=s.tls())
        except (OSError, imaplib.IMAP4.error) as err:
            raise _unreachable(server, err) from err
        try:
            if (server.user + password.value).isascii():
                conn.login(server.user, password.value)
            else:  # imaplib sends LOGIN in ASCII only; AUTHENTICATE PLAIN carries UTF-8 (RFC 4616)
                conn.authenticate("PLAIN", lambda _challenge: b"\0" + server.user.encode("utf-8") + b"\0"
                                  + password.value.encode("utf-8"))
        except imaplib.IMAP4.error as err:
            conn.shutdown()
            raise _login_failed(server, _imap_text(err)) from err
        try:  # servers announce more once logged in (MOVE, UIDPLUS); imaplib keeps the first list
            typ, data = conn.capability()
            if typ == "OK" and data and data[-1]:
                conn.capabilities = tuple(data[-1].decode("ascii", "replace").upper().split())
        except imaplib.IMAP4.error:
            pass
        if "ID" in conn.capabilities:
            # RFC 2971: NetEase's 163 and 126 are reported to refuse SELECT ("Unsafe Login") from a
            # client that has not said who it is.
            imaplib.Commands.setdefault("ID", ("AUTH", "SELECTED"))
            try:
                conn._simple_command("ID", '("name" "happyhome" "version" "%s")' % _version())
            except imaplib.IMAP4.error:
                pass
        self.conn = conn

    def close(self) -> None:
        try:
            self.conn.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _version() -> str:
    from pipeline import __version__

    return __version__


def _imap_text(err: Exception) -> str:
    text = str(err)
    if text.startswith(("b'", 'b"')):
        text = text[2:-1]
    return text


def _check(typ: str, data, what: str) -> list:
    if typ != "OK":
        raise MailError(_("The mail server refused {what}: {answer}").format(
            what=what, answer=b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")))
    return data


def _imap_quote(mailbox: str) -> str:
    """A mailbox name for a command: modified UTF-7 (RFC 3501) for non-ASCII, quoted."""
    if mailbox.isascii():
        encoded = mailbox
    else:
        out, run = [], ""
        for ch in mailbox:
            if " " <= ch <= "~":
                if run:
                    out.append("&" + _b64utf7(run) + "-")
                    run = ""
                out.append("&-" if ch == "&" else ch)
            else:
                run += ch
        if run:
            out.append("&" + _b64utf7(run) + "-")
        encoded = "".join(out)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _b64utf7(text: str) -> str:
    return base64.b64encode(text.encode("utf-16-be")).decode("ascii").rstrip("=").replace("/", ",")


def fetch_round(ws: Workspace, system: System, key: str, roster: Roster, *, since: date | None = None,
                move_to: str | None = None, ask: Callable[[str], str] | None = None) -> FetchResult:
    """Save the spreadsheets mailed back since the round began into its returned folder; the
    mailbox is read-only unless `move_to` (messages taken are then moved to that folder)."""
    from pipeline.ledger import Ledger
    from pipeline.lock import workspace_lock

    settings = MailSettings.of(ws)
    if settings.imap is None:
        raise ConfigError(_("[mail] imap is not set in happyhome.toml: set it to the office's incoming server, "
                            "e.g. imaps://office@example.org@imap.example.org:993."))
    limits = Limits.from_settings(ws["limits"])
    folder = ws.returned(key)
    known = {a.email.casefold() for a in roster.assessors.values() if a.email}
    # Not beside a collect (it reads the returned folder) or another fetch (both would save the same mail).
    with workspace_lock(ws), Ledger.open(ws) as ledger:
        result = FetchResult(key, folder, since or round_start(ws, key, ledger))
        taken = ledger.mail_fetched_ids(key)
        password = get_password(settings.imap, ask)
        session = _Imap(settings, password)
        remember(settings.imap, password)
        conn = session.conn
        try:
            typ, data = conn.select(_imap_quote(settings.mailbox), readonly=move_to is None)
            _check(typ, data, _("to open the folder {mailbox}").format(mailbox=settings.mailbox))
            day = f"{result.since.day}-{MONTHS[result.since.month - 1]}-{result.since.year}"  # RFC 3501 date
            typ, data = conn.uid("SEARCH", None, "SINCE", day)
            uids = _check(typ, data, "SEARCH")[0].split()
            to_move = []
            ids = _message_ids(conn, uids)
            for uid in uids:
                message_id = ids.get(uid, "")
                if message_id and message_id in taken:
                    result.seen += 1
                    continue
                typ, data = conn.uid("FETCH", uid, "(INTERNALDATE BODY.PEEK[])")
                parts = [d for d in _check(typ, data, "FETCH") if isinstance(d, tuple)]
                if not parts:
                    continue
                raw = parts[0][1]
                message_id = message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
                if message_id in taken:
                    result.seen += 1
                    continue
                stamp = imaplib.Internaldate2tuple(parts[0][0])
                received = datetime(*stamp[:6]) if stamp else datetime.now()
                rows = _take(BytesParser(policy=policy.default).parsebytes(raw), received, folder, key, limits,
                             known, ledger, result)
                for row in rows:
                    row.update(period=key, mailbox=settings.mailbox, uid=uid.decode(), message_id=message_id,
                               received_at=received.isoformat(timespec="seconds"),
                               fetched_at=datetime.now().isoformat(timespec="seconds"))
                ledger.add_mail_fetched(rows)
                taken.add(message_id)
                result.messages += 1
                to_move.append(uid)
            if move_to and to_move:
                result.moved = _move(conn, to_move, move_to)
        except (OSError, imaplib.IMAP4.abort) as err:
            raise MailError(_("The mail server {host} broke off the session: {error}. What was saved so far is "
                              "recorded; run fetch again for the rest.").format(host=settings.imap.host,
                                                                                error=err)) from err
        finally:
            session.close()
    return result


def _message_ids(conn: imaplib.IMAP4, uids: list[bytes]) -> dict[bytes, str]:
    """UID -> Message-ID of these messages, a few hundred per command (one round trip each, not one
    per message: a re-run over a full mailbox reads only these headers)."""
    out: dict[bytes, str] = {}
    for start in range(0, len(uids), 500):
        chunk = b",".join(uids[start:start + 500]).decode()
        typ, data = conn.uid("FETCH", chunk, "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        for part in _check(typ, data, "FETCH"):
            if isinstance(part, tuple):
                found = re.search(rb"UID (\d+)", part[0])
                if found:
                    out[found.group(1)] = _message_id(part[1])
    return out


def _message_id(header: bytes) -> str:
    found = re.search(rb"<[^<>\s]+>", header or b"")
    return found.group(0).decode("ascii", "replace") if found else ""


def _take(msg: Message, received: datetime, folder: Path, key: str, limits: Limits, known: set[str], ledger,
          result: FetchResult) -> list[dict]:
    """Save one message's spreadsheets; its ledger rows (one per file, or one for a message with none)."""
    _name, address = email.utils.parseaddr(decode_text(msg.get("From", "")))
    sender = address.strip() or decode_text(msg.get("From", ""))
    subject = decode_text(msg.get("Subject", ""))
    is_known = sender.casefold() in known
    rows = []
    for found in spreadsheets_in(msg, limits):
        item = Fetched(sender, subject, received, found.name, IGNORED, reason=found.reason, known_sender=is_known)
        sha = ""
        if found.data is not None:
            sha = hashlib.sha256(found.data).hexdigest()
            before = ledger.mail_saved_as(key, sha)
            if before:
                item.status, item.path = DUPLICATE, Path(before)
            else:
                item.status = SAVED
                item.path = _save(folder, saved_name(received, sender, found.name), found.data, received)
        result.items.append(item)
        rows.append({"sender": sender, "attachment": found.name, "sha256": sha,
                     "saved_path": str(item.path) if item.path else "", "status": item.status})
    if not rows:
        rows.append({"sender": sender, "attachment": "", "sha256": "", "saved_path": "", "status": IGNORED})
    return rows


def _save(folder: Path, name: str, data: bytes, received: datetime) -> Path:
    """Write atomically; another file of that name (other bytes) gets ~2, ~3 …; mtime = arrival."""
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = os.path.splitext(name)
    target, n = folder / name, 2
    while target.exists():
        target, n = folder / f"{stem}~{n}{suffix}", n + 1
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    stamp = received.timestamp()
    os.utime(target, (stamp, stamp))
    return target.resolve()


def _move(conn: imaplib.IMAP4, uids: list[bytes], folder: str) -> int:
    """Move the messages taken to `folder` (MOVE, else COPY + \\Deleted + EXPUNGE of just those)."""
    target = _imap_quote(folder)
    conn.create(target)  # fails harmlessly when it exists
    ids = b",".join(uids).decode()
    if "MOVE" in conn.capabilities:
        _check(*conn.uid("MOVE", ids, target), _("to move messages to {folder}").format(folder=folder))
    else:
        _check(*conn.uid("COPY", ids, target), _("to move messages to {folder}").format(folder=folder))
        _check(*conn.uid("STORE", ids, "+FLAGS.SILENT", "(\\Deleted)"), "STORE")
        if "UIDPLUS" in conn.capabilities:
            conn.uid("EXPUNGE", ids)
        else:
            conn.expunge()
    return len(uids)


