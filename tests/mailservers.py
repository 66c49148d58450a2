"""Real mail servers on 127.0.0.1 for the tests of happyhome send / fetch: no mock of either protocol.

- SMTP: aiosmtpd, with AUTH, over implicit TLS (smtps) or STARTTLS, with a certificate made here
  (`make_cert`) that the client trusts through [mail] cafile. It keeps every message it accepted,
  refuses the recipients it is told to (550) and drops the connection in the middle of a message
  when told to (once per address).
- IMAP: Debian's dovecot, started as a child process with a generated configuration in a
  temporary folder: a passwd-file with one throwaway user, maildirs in the folder, TLS with the
  same certificate (imaps, and imap with STARTTLS), on free ports of 127.0.0.1. Missing dovecot is a failure, not a
  skip: .ci/run installs dovecot-imapd.
"""

from __future__ import annotations

import datetime as dt
import grp
import imaplib
import ipaddress
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from pipeline.mail import _imap_quote

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "office@example.org", "授权码-abc123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (it is its own CA): (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "happyhome test mail")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o644)  # dovecot reads it as root, then drops privileges
    return cert_path, key_path


class _Handler:
    def __init__(self, server: "SmtpServer"):
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.server.refuse:
            return "550 5.1.1 <%s>: 用户不存在 (user unknown)" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(a in self.server.drop for a in envelope.rcpt_tos):
            for a in envelope.rcpt_tos:
                self.server.drop.discard(a)
            server.transport.close()  # the line goes dead before the server answers
            return "421 closing"
        self.server.received.append((envelope.mail_from, list(envelope.rcpt_tos),
                                     message_from_bytes(envelope.original_content, policy=policy.default)))
        return "250 2.0.0 queued"


class SmtpServer:
    """aiosmtpd with AUTH on 127.0.0.1: implicit TLS (`implicit=True`) or STARTTLS."""

    def __init__(self, cert: Path, key: Path, implicit: bool = True):
        self.received: list = []
        self.refuse: set[str] = set()
        self.drop: set[str] = set()
        self.logins: list[tuple[str, bool]] = []
        self.port = free_port()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
        # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; implicit TLS is encrypted from the start
        tls = ({"ssl_context": context, "auth_require_tls": False} if implicit else
               {"tls_context": context, "require_starttls": True, "auth_require_tls": True})
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     authenticator=self._auth, server_hostname="localhost",
                                     **tls)
        self.scheme = "smtps" if implicit else "smtp"

    def _auth(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login.decode(), auth_data.password.decode()) == (
            USER, PASSWORD)
        self.logins.append((auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "", ok))
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 235 or 535 itself

    @property
    def url(self) -> str:
        return f"{self.scheme}://{USER}@127.0.0.1:{self.port}"

    def __enter__(self) -> "SmtpServer":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


class Dovecot:
    """A private dovecot for one test: started here, stopped (and its folder removed) on exit."""

    def __init__(self, cert: Path, key: Path):
        if not Path(DOVECOT).exists():
            raise RuntimeError("dovecot is not installed (Debian dovecot-imapd; .ci/run installs it)")
        # Its own folder, readable on the way down: as root dovecot runs its login and internal
        # processes as the unprivileged users the Debian package creates, and they must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="happyhome-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()  # imaps: TLS from the start
        self.starttls_port = free_port()  # imap: STARTTLS before the login (ssl = required)
        self.proc: subprocess.Popen | None = None
        self.cert, self.key = cert, key

    def _config(self) -> str:
        root = self.root
        me = pwd.getpwuid(os.getuid())
        if os.getuid() == 0:  # root: login and internal processes refuse to run as root
            internal, login = "dovecot", "dovenull"
            mail = pwd.getpwnam("dovecot")  # mail processes refuse uid 0 too
        else:
            internal = login = me.pw_name
            mail = me
        (root / "mail").mkdir()
        os.chown(root / "mail", mail.pw_uid, mail.pw_gid)
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n", encoding="utf-8")
        (root / "passwd").chmod(0o644)
        return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{self.cert}
ssl_key = <{self.key}
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal}
default_internal_group = {grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name}
default_login_user = {login}
first_valid_uid = {mail.pw_uid}
first_valid_gid = 0
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail.pw_uid} gid={mail.pw_gid} home={root}/mail/%n
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
"""

    @property
    def url(self) -> str:
        return f"imaps://{USER}@127.0.0.1:{self.port}"

    @property
    def starttls_url(self) -> str:
        return f"imap://{USER}@127.0.0.1:{self.starttls_port}"

    def __enter__(self) -> "Dovecot":
        config = self.root / "dovecot.conf"
        config.write_text(self._config(), encoding="utf-8")
        (self.root / "state").mkdir()
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.proc.stdout.read().decode(errors='replace')} {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"dovecot did not start: {self.log()}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.cert))
        conn = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=context)
        conn.authenticate("PLAIN", lambda _: b"\0" + USER.encode() + b"\0" + PASSWORD.encode("utf-8"))
        return conn

    def append(self, raw: bytes, mailbox: str = "INBOX") -> None:
        """Put a message in the mailbox over IMAP, as the mail system delivers it."""
        conn = self.client()
        try:
            typ, data = conn.append(mailbox, None, None, raw)
            assert typ == "OK", data
        finally:
            conn.logout()

    def flags(self, mailbox: str = "INBOX") -> list[str]:
        """Each message's flags, in order (read-only)."""
        conn = self.client()
        try:
            conn.select(mailbox, readonly=True)
            typ, data = conn.fetch("1:*", "(FLAGS)")
            return [d.decode() for d in data if d] if typ == "OK" and data != [None] else []
        finally:
            conn.logout()

    def count(self, mailbox: str = "INBOX") -> int:
        conn = self.client()
        try:
            typ, data = conn.select(_imap_quote(mailbox), readonly=True)  # modified UTF-7 for Chinese names
            return int(data[0]) if typ == "OK" else -1
        finally:
            conn.logout()
