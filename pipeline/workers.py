"""Worker processes that may die: every returned file is examined in one of them.

A returned file can make a reading library panic, abort the process (an allocation of hundreds
of gigabytes), loop, or simply take all the memory. None of that may stop a collection, so the
main process never parses a returned file itself: it hands the bytes to a worker process that
runs under a memory cap and a time cap, and gets back either the verdict or a `WorkerFailed`
saying why there is none. A worker that dies or runs out of time or memory is replaced and the
run goes on with the next file.

The memory cap is the kernel's `RLIMIT_AS` on Linux. Windows has no such limit (and macOS
ignores it): there the main process watches each busy worker's resident memory every
`WATCH_EVERY` seconds (psutil) and ends one that has grown past the cap. A watchdog, not a
wall: a file can overshoot by what it allocates in that interval before it is stopped.

Workers start by `fork` on Linux (cheap: the imported modules are shared) and by `spawn`
elsewhere (Windows, macOS); HAPPYHOME_START_METHOD=spawn forces it on Linux, which is how the
tests run the collect suite the way Windows does. Under spawn a worker is a fresh interpreter,
so everything it needs travels as arguments that pickle: the target is a module-level function,
the context, the caps and the terminal language are passed explicitly.

The module knows nothing of workbooks: it runs `target(data, name, context)` and returns what
it returns (which must pickle). `Background` is the other use of a second process: one call of
our own code (`report`'s summary workbook, half its bootstrap) beside the main process, on a
large round, to use the second core.
"""

from __future__ import annotations

import faulthandler
import gc
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from pipeline.errors import ConfigError
from pipeline.i18n import _, language, set_language

try:
    import resource
except ImportError:  # Windows: no RLIMIT_AS; the parent's watchdog caps memory instead
    resource = None  # type: ignore[assignment]

CRASHED, TIMED_OUT, NO_MEMORY = "read_crashed", "read_timeout", "read_memory"
START_METHOD = "HAPPYHOME_START_METHOD"
WATCH_EVERY = 0.1  # seconds between two looks at the workers' memory, where the watchdog caps it
READY = "ready"
# A file's time cap runs from when its worker is ready: a spawned worker first imports the
# reading libraries, seconds on a slow PC. A worker not ready within this long has hung at start.
START_GRACE = 60.0


def start_method() -> str:
    """fork on Linux, spawn elsewhere; HAPPYHOME_START_METHOD (spawn or fork) forces one.
    (Not forkserver: its workers are the server's children, which `_exit_with_parent` would take
    for orphans.)"""
    chosen = os.environ.get(START_METHOD, "").strip().lower()
    if not chosen:
        return "fork" if sys.platform.startswith("linux") else "spawn"
    offered = [m for m in ("fork", "spawn") if m in mp.get_all_start_methods()]
    if chosen not in offered:
        raise ConfigError(_("{variable} is set to {value}, which this system does not offer: use one of {methods}, "
                            "or remove the setting.").format(variable=START_METHOD, value=chosen,
                                                             methods=", ".join(offered)))
    return chosen


def kernel_caps_memory() -> bool:
    """Whether RLIMIT_AS caps a worker here (Linux); elsewhere the watchdog does."""
    return resource is not None and hasattr(resource, "RLIMIT_AS") and sys.platform.startswith("linux")


class WorkerFailed(Exception):
    """A file whose examination ended without a verdict; `code` is a messages.CATALOGUE key."""

    def __init__(self, code: str, technical: str):
        super().__init__(f"{code}: {technical}")
        self.code = code
        self.technical = technical


@dataclass
class _Slot:
    process: Any
    conn: Connection
    ticket: int | None = None
    started: float = 0.0  # when its file's time began: sent to a ready worker, or the worker became ready
    ready: bool = False  # it has said it is started (imports done)
    limit: int = 0  # watchdog: the resident bytes past which the worker is ended (0 = not yet known)
    watched: Any = None  # watchdog: its psutil.Process


class Workers:
    """`n` worker processes running `target(data, name, context)`, one file at a time each.

    `submit` queues a file and returns a ticket; `result(ticket)` waits for that file's verdict
    (files finish in any order; results are kept until asked for) and raises `WorkerFailed`
    when the worker died, ran out of memory or out of time.

    `watchdog` chooses how `max_memory_mb` is enforced: None (the default) uses RLIMIT_AS where the
    kernel has it and the watchdog elsewhere; True forces the watchdog (tests, on Linux).
    """

    def __init__(self, target: Callable, context: Any, n: int = 1, max_memory_mb: float = 0,
                 max_seconds: float = 0, watchdog: bool | None = None):
        self.target, self.context = target, context
        self.max_memory_mb, self.max_seconds = max_memory_mb, max_seconds
        self.watchdog = bool(max_memory_mb) and (not kernel_caps_memory() if watchdog is None else watchdog)
        self.method = start_method()
        self._mp = mp.get_context(self.method)
        self._slots = [self._start() for _ in range(max(1, n))]
        self._queue: deque[tuple[int, bytes, str]] = deque()
        self._done: dict[int, tuple] = {}
        self._next = 0

    def _start(self) -> _Slot:
        parent, child = self._mp.Pipe()
        rlimit_mb = 0 if self.watchdog else self.max_memory_mb
        process = self._mp.Process(target=_serve, daemon=True, name="happyhome-reader",
                                   args=(child, self.target, self.context, rlimit_mb, os.getpid(), self.method,
                                         language(), self.watchdog))
        process.start()
        child.close()
        return _Slot(process, parent)

    def submit(self, data: bytes, name: str) -> int:
        ticket, self._next = self._next, self._next + 1
        self._queue.append((ticket, data, name))
        self._dispatch()
        return ticket

    def result(self, ticket: int) -> Any:
        while ticket not in self._done:
            self._pump()
        outcome = self._done.pop(ticket)
        if outcome[0] == "ok":
            return outcome[1]
        raise WorkerFailed(outcome[1], outcome[2])

    def close(self) -> None:
        for slot in self._slots:
            try:  # a stop word, not just a closed pipe: forked siblings hold copies of its other end
                slot.conn.send(None)
                slot.conn.close()
            except (OSError, ValueError):
                pass
        for slot in self._slots:
            slot.process.join(timeout=2)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the loop ------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        for slot in self._slots:
            while slot.ticket is None and self._queue:
                ticket, data, name = self._queue.popleft()
                try:
                    slot.conn.send((ticket, data, name))
                except (OSError, ValueError):  # the worker is gone: replace it, hand the file on
                    self._queue.appendleft((ticket, data, name))
                    self._replace(slot)
                    continue
                slot.ticket, slot.started = ticket, time.monotonic()

    def _pump(self) -> None:
        """Wait for one worker to answer, die or overrun its time; settle it."""
        busy = [s for s in self._slots if s.ticket is not None]
        if not busy:
            raise RuntimeError("no file is being examined")  # a ticket never submitted
        timeout = None
        if self.max_seconds:
            timeout = max(0.0, min(self._deadline(s) for s in busy) - time.monotonic())
        if self.watchdog:
            timeout = WATCH_EVERY if timeout is None else min(timeout, WATCH_EVERY)
        ready = set(wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout))
        now = time.monotonic()
        for slot in busy:
            ticket = slot.ticket
            if slot.conn in ready:
                try:
                    answer = slot.conn.recv()
                    if answer[0] == READY:  # started: its file's time begins now
                        slot.ready, slot.started = True, now
                        if self.watchdog:  # the cap is on top of what the worker started with
                            slot.limit = answer[1] + int(self.max_memory_mb * 2**20)
                        continue
                    self._done[ticket] = answer
                    slot.ticket = None
                    continue
                except (EOFError, OSError):
                    pass  # it died while answering: settled below as a crash
            if slot.conn in ready or slot.process.sentinel in ready:
                slot.process.join(timeout=5)
                self._done[ticket] = ("fail", CRASHED, _how_it_ended(slot.process.exitcode))
                self._replace(slot)
            elif self.max_seconds and now >= self._deadline(slot):
                self._done[ticket] = ("fail", TIMED_OUT, f"no answer after {self.max_seconds:g} s" if slot.ready
                                      else f"the worker process did not start within {START_GRACE:g} s")
                self._replace(slot)
            elif self.watchdog and (resident := self._over_memory(slot)):
                self._done[ticket] = ("fail", NO_MEMORY, f"{resident / 2**20:.0f} MB resident, above the cap of "
                                                         f"{self.max_memory_mb:g} MB (watchdog)")
                self._replace(slot)
        self._dispatch()

    def _deadline(self, slot: _Slot) -> float:
        return slot.started + self.max_seconds + (0 if slot.ready else START_GRACE)

    def _over_memory(self, slot: _Slot) -> int:
        """The worker's resident bytes when they are past its limit, else 0."""
        if not slot.limit:
            return 0
        import psutil

        try:
            if slot.watched is None or slot.watched.pid != slot.process.pid:
                slot.watched = psutil.Process(slot.process.pid)
            resident = slot.watched.memory_info().rss
        except psutil.Error:
            return 0  # it has just ended: its sentinel says so on the next turn
        return resident if resident > slot.limit else 0

    def _replace(self, slot: _Slot) -> None:
        if slot.process.is_alive():
            slot.process.kill()
        slot.process.join(timeout=5)
        try:
            slot.conn.close()
        except OSError:
            pass
        fresh = self._start()
        slot.process, slot.conn, slot.ticket = fresh.process, fresh.conn, None
        slot.ready, slot.limit, slot.watched = False, 0, None


def _how_it_ended(code: int | None) -> str:
    if code is None:
        return "the worker process did not end"
    if code < 0:
        try:
            return f"the worker process was ended by {signal.Signals(-code).name}"
        except ValueError:
            return f"the worker process was ended by signal {-code}"
    if code > 0xFFFF:  # Windows: an NTSTATUS such as 0xC0000005 (access violation)
        return f"the worker process exited with code 0x{code:08X}"
    return f"the worker process exited with code {code}"


def _serve(conn: Connection, target: Callable, context: Any, max_memory_mb: float, parent: int,
           method: str = "fork", lang: str = "zh", report_size: bool = False) -> None:
    """A worker: answer ("ok", verdict) or ("fail", code, technical) for each file, until the
    main process closes the pipe. `max_memory_mb` is its RLIMIT_AS cap (0 = none). Once started
    it says (READY, resident bytes): the time caps count from then, and with `report_size` the
    size is measured, the watchdog's starting point (else 0)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    set_language(lang)  # a spawned worker starts with a fresh interpreter: no --lang of its own
    _quiet()
    # An orphan (its collect was killed) must not wait forever holding the workspace lock's file.
    threading.Thread(target=_exit_with_parent, args=(parent, method), daemon=True).start()
    _cap_memory(max_memory_mb)
    _calm_collector()
    resident = 0
    if report_size:
        import psutil

        resident = psutil.Process().memory_info().rss
    conn.send((READY, resident))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        ticket, data, name = message
        try:
            answer: tuple = ("ok", target(data, name, context))
        except MemoryError:
            answer = ("fail", NO_MEMORY, f"MemoryError above {max_memory_mb:g} MB" if max_memory_mb else "MemoryError")
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # noqa: BLE001 - e.g. a Rust panic (PanicException is a BaseException)
            answer = ("fail", CRASHED, f"{type(err).__name__}: {str(err)[:300]}")
        del data
        try:
            conn.send(answer)
        except MemoryError:
            conn.send(("fail", NO_MEMORY, "MemoryError while sending the verdict"))
        except Exception as err:  # noqa: BLE001 - a verdict that does not pickle
            conn.send(("fail", CRASHED, f"{type(err).__name__}: {str(err)[:300]}"))


def _quiet() -> None:
    """Send the worker's own output to nowhere: a native library that aborts prints a stack
    trace on stderr, which is noise on the office's terminal (the reason is recorded instead)."""
    faulthandler.disable()  # it writes to a copy of stderr of its own (PYTHONFAULTHANDLER, pytest)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
    except OSError:
        pass


def _exit_with_parent(parent: int, method: str) -> None:
    if method == "spawn":
        # Windows' getppid keeps naming a parent that has ended; a spawned worker instead holds
        # a handle (Windows) or pipe (POSIX) of its parent's that signals when the parent ends.
        # Not under fork: forked siblings keep copies of that pipe open.
        mp.parent_process().join()
    else:
        while os.getppid() == parent:
            time.sleep(0.2)
    os._exit(1)


def _cap_memory(max_memory_mb: float) -> None:
    """Let this process grow by at most `max_memory_mb` of address space from here on: past it,
    Python raises MemoryError and a native library that cannot allocate aborts the worker."""
    if not max_memory_mb or resource is None or not hasattr(resource, "RLIMIT_AS"):
        return
    try:
        with open("/proc/self/statm") as handle:
            current = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return  # no /proc (macOS ignores RLIMIT_AS anyway)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = current + int(max_memory_mb * 2**20)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):
        pass


# -- one function in a second process ----------------------------------------------------------
# A forked process shares this one's memory pages until either writes to them, and Python's
# collector writes to every object it examines: the objects there at the fork are left out of
# collections (gc.freeze) in both processes while a second process runs, so that neither copies
# the pages of the other's data for nothing (a national report: ~20 MB less in all).
_forked = 0


def _freeze() -> None:
    global _forked
    _forked += 1
    gc.freeze()


def _thaw() -> None:
    global _forked
    _forked -= 1
    if not _forked:
        gc.unfreeze()


# Reading a file makes tens of thousands of short-lived lists (calamine's rows), which the
# refcounts free; at Python's default threshold (700) the cyclic collector ran every second sheet
# and re-examined whatever was alive: ~0.2 s of CPU per worker on a 360-file collect, where at
# 50,000 it does not run at all. Cycles are still collected, once 50,000 objects more are alive
# than before (some 10 MB at most).
COLLECT_EVERY = 50_000


def _calm_collector() -> None:
    """In a worker: leave what it inherited out of collections (under fork, examining those
    objects would also copy their pages), and collect young objects every COLLECT_EVERY."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(COLLECT_EVERY, middle, old)


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim; elsewhere nothing).
    glibc keeps what a program frees for its next allocations, and pandas' and numpy's large
    temporaries leave tens of MB free between the arrays kept: `report` gives them back after
    reading and scoring a round (a national month: ~50 MB) and after the bootstrap. A few ms."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # a C library without it (musl)
        pass


class Background:
    """`fn(*args, **kwargs)` run in a second process while this one goes on (`report` writes the
    summary workbook so while it writes the CSVs and the digest: two cores, half the wait).

    Started as the workers are (fork on Linux, spawn elsewhere): under spawn the function must be
    module-level and its arguments must pickle. `result()` waits and returns what it returned, or
    raises the exception it raised (with its traceback as a note). If the process cannot start
    or dies without an answer (killed, out of memory), `result()` runs the function here instead:
    the work is done either way, only slower. `enabled=False` runs it here from the start.
    Leaving the `with` block early (an error in this process) ends the second one first.
    """

    def __init__(self, fn: Callable, *args: Any, enabled: bool = True, **kwargs: Any):
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.process: Any = None
        self.conn: Connection | None = None
        self._frozen = False
        self.ran_apart = False  # whether the answer came from the second process (tests, benchmarks)
        if enabled:
            self._start()

    def _start(self) -> None:
        method = start_method()
        ctx = mp.get_context(method)
        parent, child = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_run_apart, daemon=True, name="happyhome-background",
                              args=(child, self.fn, self.args, self.kwargs, os.getpid(), method, language()))
        frozen = method == "fork"
        if frozen:
            _freeze()
        try:
            process.start()
        except Exception:  # noqa: BLE001 - e.g. an argument that does not pickle under spawn: run here
            parent.close()
            if frozen:  # only what was frozen here is thawed: under spawn nothing was
                _thaw()
            return
        finally:
            child.close()
        self.process, self.conn, self._frozen = process, parent, frozen

    def result(self) -> Any:
        answer = None
        if self.process is not None:
            try:
                ready = wait([self.conn, self.process.sentinel])
                if self.conn in ready:
                    answer = self.conn.recv()
            except (EOFError, OSError):
                answer = None  # it died while answering
            self._stop(kill=answer is None)
        if answer is None:
            return self.fn(*self.args, **self.kwargs)
        self.ran_apart = True
        if answer[0] == "ok":
            return answer[1]
        error = answer[1]
        error.add_note(f"(in the background process)\n{answer[2]}")
        raise error

    def _stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if not kill:  # it has answered: it ends at once (os._exit)
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()
        self.process = None
        if self._frozen:
            _thaw()

    def __enter__(self) -> "Background":
        return self

    def __exit__(self, *exc) -> None:
        self._stop(kill=True)


def _run_apart(conn: Connection, fn: Callable, args: tuple, kwargs: dict, parent: int, method: str,
               lang: str) -> None:
    """The second process of `Background`: one call, one answer."""
    import traceback

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    set_language(lang)
    threading.Thread(target=_exit_with_parent, args=(parent, method), daemon=True).start()
    try:
        answer: tuple = ("ok", fn(*args, **kwargs))
    except BaseException as err:  # noqa: BLE001 - handed to the main process, which raises it
        answer = ("error", err, traceback.format_exc())
    try:
        conn.send(answer)
    except Exception:  # noqa: BLE001 - an exception (or a value) that does not pickle
        conn.send(("error", RuntimeError(f"{type(answer[1]).__name__}: {str(answer[1])[:300]}"),
                   answer[2] if len(answer) > 2 else ""))
    conn.close()
    os._exit(0)  # no interpreter teardown (seconds for a big heap under spawn): the answer is sent
