"""PDFs for leaders: the digest and roll-up HTML printed by a Chromium-family browser.

No PDF library is involved: the page's own print stylesheet (A4, the ranking on landscape
pages, a footer with the round and page numbers in CSS page-margin boxes, which Chromium
draws from version 131) decides the layout, so a PDF printed here and a print-out made with
Ctrl+P look the same. The browser is whatever the machine has: Chromium, Google Chrome or
Microsoft Edge (every Windows office has Edge), or the one named by HAPPYHOME_BROWSER.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.atomic import atomic_path
from pipeline.errors import OutputError
from pipeline.i18n import _

ENV = "HAPPYHOME_BROWSER"
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome",
         "msedge", "microsoft-edge", "microsoft-edge-stable")
# Under %ProgramFiles%, %ProgramFiles(x86)% and %LocalAppData% (a per-user install).
WINDOWS = (("Google", "Chrome", "Application", "chrome.exe"), ("Microsoft", "Edge", "Application", "msedge.exe"),
           ("Chromium", "Application", "chrome.exe"))
MACOS = ("/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
         "/Applications/Microsoft Edge.app/Contents/MacOS/Microsoft Edge",
         "/Applications/Chromium.app/Contents/MacOS/Chromium")
TIMEOUT = 120  # seconds: the least a page gets to print (a 100-subject digest takes a few)
# ... and this many more per MB of HTML: a national digest (2.1 MB, 372 pages) printed in 21 s on
# the 2-core machine of the README (load 3), and a busy machine takes several times as long.
PER_MB = 150


class BrowserNotFound(OutputError):
    """No Chromium-family browser to print the PDF with."""


def _runnable(path: str | Path) -> bool:
    p = Path(path)
    return p.is_file() and (sys.platform == "win32" or os.access(p, os.X_OK))


def configured_browser() -> str | None:
    """HAPPYHOME_BROWSER as given: surrounding quotes (Windows' "Copy as path" adds them) removed,
    ~ and environment variables (%ProgramFiles% on Windows, $HOME elsewhere) expanded."""
    value = os.environ.get(ENV, "").strip().strip('"').strip()
    return os.path.expandvars(os.path.expanduser(value)) if value else None


def find_browser() -> str | None:
    """The browser to print with, or None.

    HAPPYHOME_BROWSER, when set, is the only candidate: a path to the executable (or a command
    on PATH); when it names nothing runnable the answer is None, so a wrong setting is reported
    rather than silently replaced by another browser. Otherwise the usual command names on PATH,
    then the usual install folders on Windows and macOS.
    """
    chosen = configured_browser()
    if chosen:
        if _runnable(chosen):
            return str(Path(chosen))
        return shutil.which(chosen)
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    candidates: list[Path] = []
    if sys.platform == "win32":
        roots = [os.environ.get(v) for v in ("ProgramFiles", "ProgramFiles(x86)", "LocalAppData")]
        candidates = [Path(root).joinpath(*parts) for parts in WINDOWS for root in roots if root]
    elif sys.platform == "darwin":
        candidates = [Path(p) for p in MACOS]
        candidates += [Path.home() / p.lstrip("/") for p in MACOS]  # ~/Applications
    for path in candidates:
        if _runnable(path):
            return str(path)
    return None


def no_browser_reason() -> str:
    """Why there is no browser, in words that say what to do."""
    chosen = configured_browser()
    if chosen:
        return _("{variable} is set to {value}, which is not a browser that can be run: correct it or remove "
                 "the setting.").format(variable=ENV, value=chosen)
    return _("No Chromium-family browser found: install Chromium, Google Chrome or Microsoft Edge, "
             "or set {variable} to its path.").format(variable=ENV)


def timeout_for(html: str | Path, setting: float = 0) -> float:
    """How many seconds the browser gets to print `html`: `setting` ([report] pdf_timeout) when
    it is positive; otherwise TIMEOUT plus PER_MB per MB of the page, so a national page gets
    minutes and a hung browser on a small one is still stopped after two."""
    if setting and setting > 0:
        return float(setting)
    return TIMEOUT + PER_MB * Path(html).stat().st_size / 1e6


def browser_command(browser: str, html: Path, pdf: Path, profile: Path, tagged: bool = True) -> list[str]:
    """The command line that prints `html` to `pdf` with no network and a throwaway profile.

    `tagged=False` leaves out the PDF's structure tree (Chromium tags every table cell for screen
    readers): for a national digest it is 90 % of the file (66 MB against 6.5 MB) and half of the
    printing time; browsers that do not know the switch ignore it."""
    args = [
        browser, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
        f"--user-data-dir={profile}",
        # The page draws its own footer; the browser's (date, title, file URL) is switched off.
        # Chromium ≥ 120 knows the first name, older Chrome and Edge the second; each ignores the other.
        "--no-pdf-header-footer", "--print-to-pdf-no-header",
        f"--print-to-pdf={pdf}",
    ]
    if not tagged:
        args.append("--disable-pdf-tagging")
    if sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox
    args.append(html.resolve().as_uri())
    return args


def _last_words(stderr: bytes) -> str:
    """The browser's last meaningful line on stderr (Linux builds chatter about D-Bus)."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and "dbus" not in line.lower() and "bytes written to file" not in line]
    return lines[-1][:300] if lines else ""


def print_pdf(html: str | Path, pdf: str | Path, browser: str, timeout: float = TIMEOUT, tagged: bool = True) -> Path:
    """Print `html` to `pdf` with `browser` (headless); the PDF replaces `pdf` only when whole.
    `tagged`: see browser_command.

    Raises OutputError with the reason when the browser cannot be started, fails, takes longer
    than `timeout` seconds or writes no PDF.
    """
    html, pdf = Path(html), Path(pdf)
    with tempfile.TemporaryDirectory(prefix="happyhome-browser-", ignore_cleanup_errors=True) as profile:
        with atomic_path(pdf) as tmp:
            tmp.unlink()  # the browser creates it: an empty file left behind would pass for output
            code, stderr = _run(browser_command(browser, html, tmp.resolve(), Path(profile), tagged), browser, html,
                                timeout)
            # A whole PDF counts even if the browser then exits badly (some builds do on shutdown);
            # without one, its exit status and last words are the reason.
            if not _whole_pdf(tmp):
                if code != 0:
                    words = _last_words(stderr)
                    raise OutputError(_("The browser {browser} failed to print {path} (exit status {code}){detail}.").format(
                        browser=browser, path=html, code=code, detail=f": {words}" if words else ""))
                raise OutputError(_("The browser {browser} wrote no PDF for {path}.").format(browser=browser, path=html))
    return pdf


def _whole_pdf(path: Path) -> bool:
    """The file starts as a PDF does and ends with its %%EOF marker (a cut-off write does not)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(5)
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 1024))
            tail = fh.read()
    except FileNotFoundError:
        return False
    return head == b"%PDF-" and b"%%EOF" in tail


def _run(command: list[str], browser: str, html: Path, timeout: float) -> tuple[int, bytes]:
    """Run the browser to the end: (exit status, stderr). A browser that cannot start or does not
    finish in `timeout` seconds is an OutputError."""
    try:
        # Its own session where there are process groups (POSIX): see _end_tree.
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=hasattr(os, "killpg"))
    except OSError as err:
        raise OutputError(_("Cannot start the browser {browser}: {reason}.").format(
            browser=browser, reason=err.strerror or err)) from err
    try:
        stderr = proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        _end_tree(proc)
        proc.communicate()
        raise OutputError(_("The browser {browser} did not finish printing {path} within {seconds} seconds.").format(
            browser=browser, path=html, seconds=int(timeout))) from None
    return proc.returncode, stderr


def _end_tree(proc: subprocess.Popen) -> None:
    """Stop a browser that hangs together with its helper processes (renderer, GPU, utility).
    psutil finds them on every system (Windows has no process groups); on POSIX the browser's
    session is also killed as a group, which reaches a helper that has left the tree."""
    import psutil

    try:
        helpers = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        helpers = []
    killpg = getattr(os, "killpg", None)
    if killpg is not None:
        try:
            killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    for helper in helpers:
        try:
            helper.kill()
        except psutil.Error:
            pass
    proc.kill()


def pdf_beside(html: str | Path, browser: str | None = None, *, timeout: float = 0, tagged: bool = True) -> Path:
    """Print an HTML output to the PDF of the same name beside it; the browser is found if not given.
    `timeout` is [report] pdf_timeout (0: by the page's size, see timeout_for); `tagged=False`
    for the pages of large rounds (see browser_command).

    Raises BrowserNotFound when there is none, OutputError when printing fails.
    """
    html = Path(html)
    browser = browser or find_browser()
    if not browser:
        raise BrowserNotFound(no_browser_reason())
    return print_pdf(html, html.with_suffix(".pdf"), browser, timeout_for(html, timeout), tagged)
