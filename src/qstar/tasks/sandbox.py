"""Run untrusted, model-written Python against unit tests without letting it touch the caller.

Why this shape:

* **Supervisors, then fork per candidate.** A small pool of worker processes, each a fresh
  ``python -I -S`` running this file, serves the caller over a pipe. A worker never runs candidate
  code itself: per candidate it forks a child from its pristine, pre-imported interpreter, which
  costs about a millisecond where a new interpreter costs 15-20 ms (and ``typing``, which every
  HumanEval prompt imports, 5 ms more). The worker is the trusted supervisor: it owns the wall
  clock, the output cap, the kill of the child's whole process group and the clean-up, so a
  candidate that hangs, floods or dies takes nothing with it.
* **The child locks itself down before the candidate's first line**, in layers that do not depend
  on one another: a new session (so ``os.killpg`` reaches everything it could leave behind), a
  fresh temporary directory as its working directory, a scrubbed environment, rlimits (address
  space, CPU time, file size, open files, no core files); then, where the kernel offers them,
  Landlock (writes only beneath that directory, no TCP, no signals or abstract sockets beyond its
  own domain) and a seccomp filter (no exec, no fork, no network sockets, no ptrace, no device
  nodes, no mounts). As root, rlimits on processes and file permissions stop nothing: these kernel
  layers, not user ids, carry the weight.
* **An audit hook and a few patched functions** (PEP 578) give the same rules as Python exceptions
  a candidate can see, and are the only layer on kernels without Landlock/seccomp: process
  creation, ``os.kill``, sockets, writes outside the directory, raising rlimits, ctypes, fresh
  (unpatched) copies of patched modules, and the interpreter's frames.
* **Verdicts cannot be forged by the candidate.** The harness reports through a private pipe, tagged
  with a per-run random nonce, after the candidate's whole program returned; a pass also needs exit
  status 0 from the harness's own ``_exit`` (the candidate's ``os._exit`` raises ``SystemExit``).
  The harness runs from a private copy of this module's namespace and builtins, and frames (where
  the nonce lives) are closed to candidate code, so rebinding globals, patching builtins or printing
  a fake verdict reads as a failure or a crash, never a pass.

Statuses: ``passed``; ``failed`` (an ``AssertionError``: the tests ran and one did not hold);
``crashed`` (any other exception, a signal, a sandbox violation, too much output); ``timeout``
(wall clock or CPU time); ``memory`` (``MemoryError`` under the address-space limit, or death by
signal near it).

What it does not hold: reads are not confined (only ``/proc`` and most of ``/dev`` are refused), so
a candidate can read what the caller's user can, though it has no channel out but its own output;
the number of files it writes in its directory is bounded only by time and ``max_file_bytes`` each;
without Landlock/seccomp, unaudited C APIs (``dbm``, ``readline``) can still write elsewhere; with
``max_processes > 0`` the kernel allows fork and only the audit hook counts; and in-process checks
cannot be proven complete, so an unknown interpreter hole could forge a pass, though not escape the
kernel layers.

This file imports only the standard library: the worker runs it as a script with ``-I -S``, so
neither ``qstar`` nor site-packages are importable there (nor, therefore, by candidates).
"""

from __future__ import annotations

import _thread
import atexit
import builtins
import gc
import json
import math
import os
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.machinery import EXTENSION_SUFFIXES
from types import CodeType, FrameType, FunctionType, TracebackType
from typing import NoReturn

STATUSES = ("passed", "failed", "crashed", "timeout", "memory")
_FILENAME = "<candidate>"
_DIR_PREFIX = "qstar-sandbox-"
_DETAIL_CHARS = 500
_VERDICT_BYTES = 16 * 1024
_MAX_MESSAGE = 256 * 1024 * 1024
# A worker that answers nothing this long after the candidate's own limit is broken, not busy.
_WORKER_GRACE_S = 15.0
_HERE = os.path.abspath(__file__)

# C functions captured while this module is imported in the (still trusted) worker: a candidate that
# patches ``os``, ``sys`` or ``gc`` cannot change what the harness and the audit hook call.
_os_write, _os_exit, _getpid, _getcwd = os.write, os._exit, os.getpid, os.getcwd
_lstat, _stat, _readlink, _fspath = os.lstat, os.stat, os.readlink, os.fspath
_get_ident, _exc_info, _len = _thread.get_ident, sys.exc_info, len
_gc_disable, _gc_enable, _gc_isenabled = gc.disable, gc.enable, gc.isenabled
_FS_ENCODING = sys.getfilesystemencoding()
_EXT_SUFFIXES = tuple(EXTENSION_SUFFIXES)
_AF_UNIX = 1  # the same on every POSIX system
_LIBC = None  # libc through ctypes, loaded by the worker (see _load_libc)
_EXTENSION_FILES: frozenset[str] = frozenset()  # extension modules the worker loaded (see _check_import)


# ----------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class SandboxConfig:
    """Limits for one candidate run; the defaults suit unit-test-sized programs like HumanEval's."""

    timeout_s: float = 5.0
    """wall clock, enforced by the supervisor (a sleeping candidate uses no CPU)"""
    cpu_s: float = 5.0
    """CPU time (RLIMIT_CPU), rounded up to whole seconds by the kernel"""
    memory_mb: int = 512
    """address space (RLIMIT_AS) of the candidate process"""
    max_processes: int = 0
    """os.fork calls the candidate may make (its children cannot fork); exec is never allowed"""
    max_output_bytes: int = 64 * 1024
    """stdout+stderr kept; a candidate that writes more is stopped (status crashed)"""
    max_file_bytes: int = 16 * 1024 * 1024
    """largest file the candidate may write in its directory (RLIMIT_FSIZE)"""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """candidates run at once by run_batch"""

    def __post_init__(self) -> None:
        checks = {
            "timeout_s": self.timeout_s > 0,
            "cpu_s": self.cpu_s > 0,
            "memory_mb": self.memory_mb >= 32,
            "max_processes": self.max_processes >= 0,
            "max_output_bytes": self.max_output_bytes >= 0,
            "max_file_bytes": self.max_file_bytes >= 0,
            "workers": self.workers >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            from qstar.errors import QstarError  # local: the worker runs this file without qstar

            raise QstarError(f"invalid sandbox limits: {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}")


@dataclass(frozen=True)
class SandboxResult:
    """The verdict on one program. ``detail`` says why (the failing assertion's line, the exception)."""

    status: str
    detail: str = ""
    wall_s: float = 0.0
    output: str = ""
    """the program's stdout and stderr, interleaved, capped at ``max_output_bytes``"""
    guards: tuple[str, ...] = ()
    """the protection layers that were active: rlimits, audit, landlock, seccomp"""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_program(program: str, config: SandboxConfig | None = None) -> SandboxResult:
    """Run one program in the sandbox; never raises (a sandbox failure is a ``crashed`` result)."""
    return _run_one(program, config or SandboxConfig())


def run_batch(programs: list[str], config: SandboxConfig | None = None) -> list[SandboxResult]:
    """Run programs ``config.workers`` at a time; results in the order of ``programs``; never raises."""
    config = config or SandboxConfig()
    programs = list(programs)
    if not programs:
        return []
    width = max(1, min(config.workers, len(programs)))
    if width == 1:
        return [_run_one(program, config) for program in programs]
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda program: _run_one(program, config), programs))


# ----------------------------------------------------------------------------------------------
# Caller side: a pool of supervisor processes


def _run_one(program: str, config: SandboxConfig) -> SandboxResult:
    """One program through a pooled worker; every failure of the machinery becomes a result."""
    if not isinstance(program, str):
        return SandboxResult("crashed", f"program must be a string, got {type(program).__name__}")
    request = {"program": program, "limits": _limits(config)}
    for attempt in range(2):  # an idle worker that died meanwhile gets one fresh replacement
        try:
            pool = _pool()
            worker = pool.acquire()
        except Exception as err:  # noqa: BLE001 - never raise into the caller
            return SandboxResult("crashed", f"sandbox worker could not start: {err}")
        try:
            _send(worker.proc.stdin.fileno(), request)
        except OSError as err:
            pool.discard(worker)
            if attempt:
                return SandboxResult("crashed", f"sandbox worker failed: {err}")
            continue
        return _await(pool, worker, config.timeout_s + _WORKER_GRACE_S)
    raise AssertionError("unreachable")


def _await(pool: _Pool, worker: _Worker, timeout_s: float) -> SandboxResult:
    """The worker's reply; a worker that is silent past the limits or dies is killed, not reused."""
    try:
        reply = _recv(worker.proc.stdout.fileno(), time.monotonic() + timeout_s)
        if reply is None:
            raise EOFError("worker exited")
    except Exception as err:  # noqa: BLE001
        pool.discard(worker)
        return SandboxResult("crashed", f"sandbox worker failed: {type(err).__name__}: {err}")
    pool.release(worker)
    return _result(reply)


def _limits(config: SandboxConfig) -> dict:
    return {
        "timeout_s": float(config.timeout_s),
        "cpu_s": float(config.cpu_s),
        "memory_mb": int(config.memory_mb),
        "max_processes": int(config.max_processes),
        "max_output_bytes": int(config.max_output_bytes),
        "max_file_bytes": int(config.max_file_bytes),
    }


def _result(reply: dict) -> SandboxResult:
    status = reply.get("status")
    if status not in STATUSES:
        return SandboxResult("crashed", f"sandbox worker sent an unknown status {status!r}")
    return SandboxResult(
        status=status,
        detail=str(reply.get("detail", "")),
        wall_s=float(reply.get("wall_s", 0.0)),
        output=str(reply.get("output", "")),
        guards=tuple(reply.get("guards", ())),
    )


class _Worker:
    """A supervisor process and the length-prefixed JSON protocol to it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable or "python3", "-I", "-S", "-B", _HERE, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_worker_env(),
            start_new_session=True,  # a terminal's Ctrl-C goes to the caller, which then closes us
        )

    def close(self) -> None:
        """Closing stdin ends a healthy worker; kill whatever does not end promptly."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)  # it first lets its janitor finish removing directories
        except Exception:  # noqa: BLE001
            self.kill()

    def kill(self) -> None:
        """Kill the worker alone: its candidate dies with it (PDEATHSIG) and its janitor, seeing the end
        of its pipe, still removes every directory it was given before exiting."""
        try:
            self.proc.kill()
            self.proc.wait(timeout=2)
        except Exception:  # noqa: BLE001
            pass


def _worker_env() -> dict[str, str]:
    """A minimal environment: the caller's secrets (API tokens) never reach candidate code."""
    return {"PATH": os.defpath, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


class _Pool:
    """Idle workers, shared by all threads of one process (a forked caller builds its own)."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.idle: list[_Worker] = []
        self.lock = threading.Lock()

    def acquire(self) -> _Worker:
        with self.lock:
            while self.idle:
                worker = self.idle.pop()
                if worker.proc.poll() is None:
                    return worker
                worker.kill()  # reap it
        return _Worker()

    def release(self, worker: _Worker) -> None:
        with self.lock:
            if len(self.idle) < 64 and worker.proc.poll() is None:
                self.idle.append(worker)
                return
        worker.close()

    def discard(self, worker: _Worker) -> None:
        worker.kill()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for worker in idle:
            worker.close()


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> _Pool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.owner != os.getpid():
            _POOL = _Pool()
        return _POOL


@atexit.register
def _close_pool() -> None:
    if _POOL is not None and _POOL.owner == os.getpid():
        _POOL.close()


def _send(fd: int, message: dict) -> None:
    body = json.dumps(message).encode("utf-8")
    data = struct.pack(">I", len(body)) + body
    view = memoryview(data)
    while view:
        view = view[_os_write(fd, view) :]


def _recv(fd: int, deadline: float | None = None) -> dict | None:
    """One message, or None at a clean end of stream."""
    header = _read_exact(fd, 4, deadline, eof_ok=True)
    if header is None:
        return None
    (size,) = struct.unpack(">I", header)
    if size > _MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes is too large")
    return json.loads(_read_exact(fd, size, deadline).decode("utf-8"))


def _read_exact(fd: int, size: int, deadline: float | None, eof_ok: bool = False) -> bytes | None:
    chunks: list[bytes] = []
    got = 0
    while got < size:
        if deadline is not None:
            wait = deadline - time.monotonic()
            poller = select.poll()  # not select(): a big caller may hold descriptors past 1024
            poller.register(fd, select.POLLIN)
            if wait <= 0 or not poller.poll(wait * 1000):
                raise TimeoutError("no answer from the sandbox worker")
        chunk = os.read(fd, min(size - got, 1 << 20))
        if not chunk:
            if eof_ok and got == 0:
                return None
            raise EOFError("sandbox worker closed its pipe")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# ----------------------------------------------------------------------------------------------
# Worker side: supervise one forked child per request

# Imported once per worker so that every fork has them for free (HumanEval prompts import typing).
_PRELOAD = (
    "typing", "math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
    "hashlib", "fractions", "statistics", "random", "copy", "decimal", "datetime", "operator",
    "_posixsubprocess",
)  # fmt: skip


def _serve() -> None:
    """The worker's loop: one request in, one verdict out, until the caller closes the pipe."""
    janitor = _Janitor()
    _prepare_worker()
    try:
        while True:
            request = _recv(0)
            if request is None:
                return
            try:
                reply = _supervise(request["program"], request["limits"], janitor)
            except Exception as err:  # noqa: BLE001 - a supervisor bug must still answer
                reply = {"status": "crashed", "detail": f"sandbox supervisor error: {err!r}", "wall_s": 0.0}
            _send(1, reply)
    finally:
        janitor.close()


class _Janitor:
    """Removes finished sandbox directories off the critical path, in a process of its own.

    On a disk mounted with ``discard`` one ``rmdir`` waits about 3 ms, longer than a whole trivial
    candidate, while removals issued in parallel overlap. Forked before any candidate exists, the
    janitor holds none of their state; it only removes paths under the sandbox prefix.
    """

    def __init__(self) -> None:
        self.prefix = os.path.join(os.path.realpath(tempfile.gettempdir()), _DIR_PREFIX)
        read_end, self.fd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.fd)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)  # never hold the caller's pipes open: the caller must see EOF if the worker dies
            os.dup2(null, 1)
            _janitor_main(read_end, self.prefix)
            _os_exit(0)
        os.close(read_end)

    def new_dir(self) -> str:
        return os.path.realpath(tempfile.mkdtemp(prefix=_DIR_PREFIX))

    def remove(self, path: str) -> None:
        """Queue ``path``; a line under PIPE_BUF is written atomically, and a full pipe is back-pressure."""
        try:
            _os_write(self.fd, (path + "\n").encode())
        except OSError:
            shutil.rmtree(path, ignore_errors=True)  # the janitor died: clean up ourselves

    def close(self) -> None:
        """Let the janitor finish every queued removal, so nothing outlives the pool."""
        os.close(self.fd)
        os.waitpid(self.pid, 0)


def _janitor_main(fd: int, prefix: str) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool, os.fdopen(fd, "r") as paths:
        for line in paths:
            path = line.rstrip("\n")
            if path.startswith(prefix) and os.sep not in path[len(prefix) :]:
                pool.submit(shutil.rmtree, path, True)


def _prepare_worker() -> None:
    """Import what candidates commonly need, and every builtin module (their copies are refused later)."""
    sys.dont_write_bytecode = True
    for name in (*_PRELOAD, *sys.builtin_module_names):
        try:
            __import__(name)
        except ImportError:
            pass
    _load_libc()
    global _EXTENSION_FILES
    _EXTENSION_FILES = _extension_files()  # once here, not in every child (a millisecond of lstat calls)


def _supervise(program: str, limits: dict, janitor: _Janitor) -> dict:
    """Fork the candidate, watch it under the wall clock and output cap, kill its group, clean up."""
    root = janitor.new_dir()
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    nonce = os.urandom(16).hex()
    start = time.monotonic()
    limits = {**limits, "supervisor": os.getpid()}
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        os.close(res_r)
        _child_entry(program, limits, root, out_w, res_w, nonce)
    os.close(out_w)
    os.close(res_w)
    try:
        watch = _Watch(pid, out_r, res_r, limits)
        watch.run(start + limits["timeout_s"])
        wall = time.monotonic() - start
        status, detail, guards = _verdict(watch, nonce, limits)
    finally:
        for fd in (out_r, res_r):
            os.close(fd)
        janitor.remove(root)  # the child and its group are dead: nothing can write there any more
    output = bytes(watch.output[: limits["max_output_bytes"]]).decode("utf-8", "replace")
    return {"status": status, "detail": detail, "wall_s": wall, "output": output, "guards": guards}


class _Watch:
    """Drains the child's pipes into bounded buffers until it exits, overruns, or runs out of time."""

    def __init__(self, pid: int, out_r: int, res_r: int, limits: dict) -> None:
        self.pid, self.out_r, self.res_r = pid, out_r, res_r
        self.cap = limits["max_output_bytes"]
        self.output = bytearray()
        self.verdict = bytearray()
        self.stopped: str | None = None  # "timeout" or "output" when the supervisor ended the run
        self.wait_status = 0
        self.rusage = None

    def run(self, deadline: float) -> None:
        poller, pidfd = self._poller()
        try:
            while not self._exited():
                wait = deadline - time.monotonic()
                if wait <= 0:
                    self.stopped = "timeout"
                    break
                for fd, _ in poller.poll(wait * 1000 if pidfd is not None else min(wait, 0.01) * 1000):
                    if fd != pidfd and not self._read(fd):
                        poller.unregister(fd)
                if len(self.output) > self.cap:
                    break
        finally:
            if pidfd is not None:
                os.close(pidfd)
            self._finish()
        if self.stopped is None and len(self.output) > self.cap:
            self.stopped = "output"  # however fast it wrote: the same program always gets the same verdict

    def _poller(self) -> tuple[select.poll, int | None]:
        poller = select.poll()
        for fd in (self.out_r, self.res_r):
            poller.register(fd, select.POLLIN)
        try:
            pidfd = os.pidfd_open(self.pid)
            poller.register(pidfd, select.POLLIN)
        except (AttributeError, OSError):
            pidfd = None  # older kernels: poll in short slices instead
        return poller, pidfd

    def _exited(self) -> bool:
        """Whether the child has exited, without reaping it (its pid must stay a valid group id)."""
        return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def _read(self, fd: int) -> bool:
        chunk = os.read(fd, 65536)
        if fd == self.out_r:
            if len(self.output) <= self.cap:
                self.output += chunk
        else:
            self.verdict += chunk
            del self.verdict[:-_VERDICT_BYTES]
        return bool(chunk)

    def _finish(self) -> None:
        """Kill the whole group (forked helpers included), reap the child, drain what is buffered."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, self.wait_status, self.rusage = os.wait4(self.pid, 0)
        for fd in (self.out_r, self.res_r):
            os.set_blocking(fd, False)
            for _ in range(64):
                try:
                    if not self._read(fd):
                        break
                except BlockingIOError:
                    break


def _verdict(watch: _Watch, nonce: str, limits: dict) -> tuple[str, str, list[str]]:
    """Status and detail from how the run ended; a pass needs both the nonce message and exit 0."""
    if watch.stopped == "timeout":
        return (
            "timeout",
            f"wall-clock limit of {limits['timeout_s']:g}s exceeded",
            _parse_verdict(watch.verdict, nonce)[1],
        )
    if watch.stopped == "output":
        return (
            "crashed",
            f"output limit of {limits['max_output_bytes']} bytes exceeded",
            _parse_verdict(watch.verdict, nonce)[1],
        )
    message, guards = _parse_verdict(watch.verdict, nonce)
    code = watch.wait_status
    if os.WIFEXITED(code):
        exit_code = os.WEXITSTATUS(code)
        if message and (message[0] != "passed" or exit_code == 0):
            return message[0], message[1], guards
        if exit_code == 3:  # the harness's status for "memory" when it could not even write a verdict
            return "memory", f"out of memory (limit {limits['memory_mb']} MiB)", guards
        return "crashed", f"exited with status {exit_code} without a verdict", guards
    return (*_signal_verdict(os.WTERMSIG(code), watch.rusage, limits), guards)


def _signal_verdict(signum: int, rusage, limits: dict) -> tuple[str, str]:
    cpu = rusage.ru_utime + rusage.ru_stime
    if signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu >= math.ceil(limits["cpu_s"])):
        return "timeout", f"CPU-time limit of {limits['cpu_s']:g}s exceeded"
    if rusage.ru_maxrss * 1024 >= 0.9 * limits["memory_mb"] * 2**20:
        return (
            "memory",
            f"killed by {signal.Signals(signum).name} at the memory limit ({limits['memory_mb']} MiB)",
        )
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return "crashed", f"killed by {name}"


def _parse_verdict(data: bytearray, nonce: str) -> tuple[tuple[str, str] | None, list[str]]:
    """The last nonce-tagged verdict (status, detail), and the guards the child reported."""
    verdict, guards = None, []
    for line in bytes(data).decode("utf-8", "replace").split("\n"):
        parts = line.split("\t")
        if len(parts) != 4 or parts[0] != nonce:
            continue  # anything else in the pipe was written by the candidate
        if parts[1] == "started":
            guards = [g for g in parts[3].split(",") if g]
        elif parts[1] in STATUSES:
            verdict = parts[1], parts[2]
    return verdict, guards


# ----------------------------------------------------------------------------------------------
# The child: lock down, run the candidate, report
#
# Candidate code can reach this module's globals (``object.__subclasses__()`` finds its classes, and
# their methods' ``__globals__``) and the ``builtins`` module, and could rebind names there. So the
# child first switches to a private copy of the namespace, with its own builtins dict: every name the
# harness looks up while or after the candidate runs resolves in that copy, which only the harness's
# own frames and functions reference, and frames are closed to the candidate by the audit hook.


def _child_entry(program: str, limits: dict, root: str, out_w: int, res_w: int, nonce: str) -> NoReturn:
    """First code in the fork: re-enter the harness through the private namespace. Never returns."""
    try:
        child = _private_namespace()["_child"]
    except BaseException:  # noqa: BLE001
        _os_exit(2)
    child(program, limits, root, out_w, res_w, nonce)
    _os_exit(2)


def _private_namespace() -> dict:
    """A copy of this module's globals whose functions are rebound to the copy, with private builtins."""
    shared = globals()
    space = dict(shared)
    space["__builtins__"] = dict(builtins.__dict__)
    for name, value in shared.items():
        if type(value) is FunctionType and value.__globals__ is shared:
            space[name] = FunctionType(
                value.__code__, space, value.__name__, value.__defaults__, value.__closure__
            )
    return space


def _child(program: str, limits: dict, root: str, out_w: int, res_w: int, nonce: str) -> NoReturn:
    """The candidate process, already in the private namespace; ends through the captured ``_exit``."""
    try:
        guards, frames = _lock_down(root, limits, out_w, res_w)
    except BaseException as err:  # noqa: BLE001 - the child must always reach _exit
        _report(res_w, nonce, "crashed", f"sandbox setup failed: {type(err).__name__}: {err}")
        _os_exit(2)
    _report(res_w, nonce, "started", "", guards)
    try:
        status, detail = _run_candidate(program, frames)
    except MemoryError:
        status, detail = "memory", "MemoryError"
    except BaseException as err:  # noqa: BLE001
        status, detail = "crashed", f"harness interrupted by {type(err).__name__}"
    _report(res_w, nonce, status, detail)
    _os_exit(0 if status == "passed" else 3 if status == "memory" else 1)


def _report(fd: int, nonce: str, status: str, detail: str, guards: list[str] | tuple = ()) -> None:
    """One tab-separated line on the private verdict pipe (exit status 3 still says "memory" if it fails)."""
    try:
        line = f"{nonce}\t{status}\t{_one_line(detail)}\t{','.join(guards)}\n"
        _os_write(fd, line.encode("utf-8", "replace"))
    except BaseException:  # noqa: BLE001
        pass


def _lock_down(root: str, limits: dict, out_w: int, res_w: int) -> tuple[list[str], list]:
    """Everything that must hold before the candidate's first line.

    Returns the active layers and the audit hook's frame gate (see ``_candidate_line``).
    """
    os.setsid()
    _die_with_parent()
    if os.getppid() != limits["supervisor"]:
        _os_exit(2)  # the supervisor died before we could arrange to follow it
    _redirect(out_w, res_w)
    _enter(root)
    _set_rlimits(limits)
    guards = ["rlimits"]
    if _landlock_restrict(root):
        guards.append("landlock")
    if _seccomp_restrict(allow_fork=limits["max_processes"] > 0):
        guards.append("seccomp")
    _neuter()
    hook, frames = _audit_hook(root, limits["max_processes"], "landlock" in guards)
    sys.addaudithook(hook)
    guards.insert(1, "audit")
    return guards, frames


def _redirect(out_w: int, res_w: int) -> None:
    """stdin from /dev/null, stdout+stderr into the capped pipe, every other inherited fd closed."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    os.closerange(3, res_w)
    os.closerange(res_w + 1, 1 << 20)


def _enter(root: str) -> None:
    os.chdir(root)
    os.environ.clear()
    os.environ.update({"HOME": root, "TMPDIR": root, "PATH": os.defpath, "LANG": "C.UTF-8"})
    tempfile.tempdir = root
    sys.argv = [""]
    sys.dont_write_bytecode = True


def _set_rlimits(limits: dict) -> None:
    """Hard limits equal to soft ones; the audit hook also forbids raising them (root could)."""

    def cap(kind: int, soft: int, hard: int | None = None) -> None:
        resource.setrlimit(kind, (soft, soft if hard is None else hard))

    cpu = max(1, math.ceil(limits["cpu_s"]))
    cap(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU first, SIGKILL a second later
    cap(resource.RLIMIT_AS, limits["memory_mb"] * 2**20)
    cap(resource.RLIMIT_FSIZE, limits["max_file_bytes"])
    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_NOFILE, 256)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write raises OSError instead


def _neuter() -> None:
    """Replace the few unaudited calls that could end the run, escape the group, or signal out.

    The stubs are compiled in an empty namespace so that their ``__globals__`` leads nowhere. Fresh,
    unpatched copies of these modules are refused too: builtin ones by stubbing ``_imp.create_builtin``
    (every builtin module is already imported), extension ones by the audit hook's "import" rule.
    """
    import _imp
    import _posixsubprocess
    import _signal
    import posix

    space: dict = {"getsignal": _signal.getsignal}
    exec(  # noqa: S102 - our own constant source
        "def _exit(status=0):\n    raise SystemExit(status)\n"
        "def refused(*args, **kwargs):\n    raise PermissionError('not allowed in the sandbox')\n"
        "def no_copy(*args, **kwargs):\n    raise ImportError('builtin modules cannot be re-created')\n"
        "def ignored(signalnum, handler):\n    return getsignal(signalnum)\n",
        space,
    )
    for module in (os, posix):
        module._exit = space["_exit"]
        for name in ("setsid", "setpgid", "setpgrp", "mkfifo", "mknod", "chroot"):
            if hasattr(module, name):
                setattr(module, name, space["refused"])
    for module in (signal, _signal):
        # A handler would receive frames, which lead to the harness; accepting and ignoring it keeps
        # code that merely installs one (asyncio.run) working.
        module.signal = space["ignored"]
        if hasattr(module, "pidfd_send_signal"):
            module.pidfd_send_signal = space["refused"]
    _posixsubprocess.fork_exec = space["refused"]
    _imp.create_builtin = space["no_copy"]


def _run_candidate(program: str, frames: list) -> tuple[str, str]:
    """Execute the program as ``__main__``; classify how it ended."""
    module = type(sys)("__main__")
    module.__dict__["__builtins__"] = builtins  # the shared module, never this namespace's private copy
    sys.modules["__main__"] = module
    main_pid = _getpid()
    try:
        exec(compile(program, _FILENAME, "exec"), module.__dict__)  # noqa: S102 - the whole point
    except BaseException as exc:  # noqa: BLE001
        if _getpid() != main_pid:  # a forked helper unwinding: it has no verdict to give
            _os_exit(0)
        return _classify(exc, _exc_info()[2], program, module, frames)
    finally:
        _flush()
    if _getpid() != main_pid:
        _os_exit(0)
    return "passed", ""


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass


def _classify(exc: BaseException, tb, program: str, module, frames: list) -> tuple[str, str]:
    if isinstance(exc, MemoryError):
        status = "memory"
    elif isinstance(exc, AssertionError):
        status = "failed"
    else:
        status = "crashed"
    line, seen = _candidate_line(tb, frames)
    if status == "memory":  # free the hog before formatting anything
        module.__dict__.clear()
        for frame in seen:
            try:
                frame.clear()
            except BaseException:  # noqa: BLE001
                pass
    where = ""
    if line is not None:
        lines = program.splitlines()
        source = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        where = f" at line {line}: {source}"
    return status, f"{_describe(exc)}{where}"


def _candidate_line(tb, frames: list) -> tuple[int | None, list]:
    """The innermost line of candidate code in ``tb``, and the candidate frames on the way.

    Frames are opened to this thread only, with the garbage collector paused, and only exact C types
    are touched while they are open: no candidate code (a ``__del__``, a str subclass's ``__eq__``)
    can run in that window.
    """
    line, seen = None, []
    collecting = _gc_isenabled()
    _gc_disable()
    frames[0] = _get_ident()
    try:
        while type(tb) is TracebackType:
            frame = tb.tb_frame
            code = frame.f_code if type(frame) is FrameType else None
            name = code.co_filename if type(code) is CodeType else None
            if type(name) is str and name == _FILENAME:
                line = tb.tb_lineno
                seen.append(frame)
            tb = tb.tb_next
    except BaseException:  # noqa: BLE001
        pass
    finally:
        frames[0] = None
        if collecting:
            _gc_enable()
    return (line if type(line) is int else None), seen


def _describe(exc: BaseException) -> str:
    """``Type: message``; the message may run candidate code (a custom ``__str__``), still under guard."""
    try:
        name = type(exc).__name__
        text = str(exc)
        if type(name) is not str or type(text) is not str:
            raise TypeError
    except BaseException:  # noqa: BLE001
        return "exception (unprintable)"
    if isinstance(exc, SystemExit):
        return f"SystemExit({text}) before the program finished"
    return f"{name}: {text}" if text else name


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


# ----------------------------------------------------------------------------------------------
# The audit hook


_O_WRITE = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_DEV_OK = frozenset({"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full"})
_DENIED_EVENTS = frozenset(
    {
        "os.system", "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill", "subprocess.Popen",
        "pty.spawn", "resource.setrlimit", "sys.settrace", "sys.setprofile", "gc.get_objects",
        "gc.get_referrers", "gc.get_referents", "os.link", "os.symlink", "fcntl.ioctl", "os.startfile",
        "webbrowser.open", "syslog.openlog", "syslog.syslog",
    }
)  # fmt: skip
_DENIED_PREFIXES = ("ctypes.", "os.exec", "os.spawn", "os.posix_spawn", "sqlite3.", "socket.", "_winapi.")
# Frames lead to the harness's locals (the verdict nonce); these are the audited ways to get one.
_FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
# event -> (argument positions holding paths written to, positions holding a dir_fd)
_WRITE_EVENTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "os.remove": ((0,), (1,)),
    "os.rmdir": ((0,), (1,)),
    "os.rename": ((0, 1), (2, 3)),
    "os.mkdir": ((0,), (2,)),
    "os.chmod": ((0,), (2,)),
    "os.chown": ((0,), (3,)),
    "os.truncate": ((0,), ()),
    "os.utime": ((0,), (3,)),
    "os.setxattr": ((0,), ()),
    "os.removexattr": ((0,), ()),
    "shutil.rmtree": ((0,), (1,)),
    "shutil.copyfile": ((1,), ()),
    "shutil.copymode": ((1,), ()),
    "shutil.copystat": ((1,), ()),
    "shutil.copytree": ((1,), ()),
    "shutil.move": ((0, 1), ()),
    "shutil.chown": ((0,), ()),
    "shutil.make_archive": ((0,), ()),
    "shutil.unpack_archive": ((1,), ()),
    "tempfile.mkstemp": ((0,), ()),
    "tempfile.mkdtemp": ((0,), ()),
}


def _audit_hook(root: str, forks: int, kernel_fs: bool):
    """The PEP 578 hook: refuses what the candidate must not do, with an exception it can see.

    It is the only layer on kernels without Landlock/seccomp; with them it is the first, friendly
    line and the kernel the backstop. Its state lives in this closure and its lookups in the private
    namespace, so candidate code can neither reach nor rebind it. Returns ``(hook, frames)``: while
    ``frames[0]`` holds a thread id, that thread (the harness) may read frames.
    """
    frames: list = [None]
    budget = [forks]
    preloaded = frozenset(sys.modules)
    loaded_files = _EXTENSION_FILES or _extension_files()
    ext_dirs = frozenset(f.rpartition("/")[0] for f in loaded_files)
    os.register_at_fork(after_in_child=lambda: budget.__setitem__(0, 0))  # a forked helper cannot fork on

    def refuse(event: str, error: type = PermissionError) -> NoReturn:
        raise error(f"sandbox: {event} is not allowed")

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            _check_open(args, root, kernel_fs)
        elif event in _WRITE_EVENTS:
            _check_write_event(event, args, root, kernel_fs)
        elif event in ("sys._getframe", "sys._current_frames"):
            if frames[0] != _get_ident():
                refuse("frame introspection", ValueError)  # the error callers of _getframe expect
        elif event == "object.__getattr__":
            if args[1] in _FRAME_ATTRS and frames[0] != _get_ident():
                refuse(args[1], AttributeError)
        elif event == "os.fork":
            if budget[0] <= 0:
                refuse("creating processes")
            budget[0] -= 1
        elif event == "import":
            _check_import(args, preloaded, loaded_files, ext_dirs)
        elif event == "socket.__new__" and args[1] == _AF_UNIX:
            return  # a local socketpair (asyncio's self-pipe); connect/bind stay refused
        elif event == "sys.addaudithook":
            refuse(event, RuntimeError)  # RuntimeError: the new hook is silently not added
        elif event == "resource.prlimit" and _len(args) > 2 and args[2] is not None:
            refuse(event)
        elif event in _DENIED_EVENTS or event.startswith(_DENIED_PREFIXES):
            refuse(event)

    return hook, frames


def _extension_files() -> frozenset[str]:
    """Resolved files of the extension modules loaded so far."""
    files = (getattr(module, "__file__", None) for module in list(sys.modules.values()))
    return frozenset(_resolve(f) for f in files if type(f) is str and f.endswith(_EXT_SUFFIXES))


def _check_open(args: tuple, root: str, kernel_fs: bool) -> None:
    path, _mode, flags = args
    if type(path) is int:
        return  # wrapping a descriptor the candidate already holds
    real = _resolve(path)
    if real == "/proc" or real.startswith("/proc/") or (real.startswith("/dev/") and real not in _DEV_OK):
        raise PermissionError(f"sandbox: opening {real} is not allowed")
    if (flags or 0) & _O_WRITE and not (_inside(real, root) or real == "/dev/null"):
        raise PermissionError(f"sandbox: writing outside the sandbox directory is not allowed: {real}")
    if not kernel_fs and _is_dir(real):
        raise PermissionError("sandbox: directory descriptors are not allowed")  # they make dir_fd escapes


def _check_write_event(event: str, args: tuple, root: str, kernel_fs: bool) -> None:
    paths, dir_fds = _WRITE_EVENTS[event]
    if any(i < _len(args) and args[i] is not None and args[i] != -1 for i in dir_fds):
        if kernel_fs:
            return  # relative to a descriptor: only Landlock can judge it, and it does
        raise PermissionError(f"sandbox: {event} with dir_fd is not allowed")
    for i in paths:
        if i < _len(args) and args[i] is not None and type(args[i]) is not int:
            real = _resolve(args[i])
            if not _inside(real, root):
                raise PermissionError(
                    f"sandbox: {event} outside the sandbox directory is not allowed: {real}"
                )


def _check_import(args: tuple, preloaded: frozenset, loaded_files: frozenset, ext_dirs: frozenset) -> None:
    """Refuse fresh copies of modules loaded before the candidate (their patches would be gone).

    A normal import of a new module passes. The event also fires when an extension module's code is
    loaded, with its file: a second copy of one already loaded, or one from outside the interpreter's
    own extension directory (a copy the candidate wrote), is refused.
    """
    name = args[0]
    if name in preloaded:
        raise ImportError(f"sandbox: re-importing {name} is not allowed")
    path = args[1] if _len(args) > 1 else None
    if type(path) is str:
        real = _resolve(path)
        if real in loaded_files or real.rpartition("/")[0] not in ext_dirs:
            raise ImportError(f"sandbox: loading {real} as {name} is not allowed")


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root + "/")


def _resolve(path) -> str:
    """``os.path.realpath`` from captured C functions only: candidate code may have patched ``os``.

    Symlink loops and other failures resolve to a path that is inside nothing, so they are refused.
    """
    path = _fspath(path)
    if type(path) is bytes:
        path = path.decode(_FS_ENCODING, "surrogateescape")
    if not path.startswith("/"):
        path = _getcwd() + "/" + path
    parts: list[str] = []
    pending = path.split("/")[::-1]
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        current = "/" + "/".join([*parts, part])
        try:
            mode = _lstat(current).st_mode
        except OSError:
            parts.append(part)
            continue
        if mode & 0o170000 != 0o120000:  # not a symlink
            parts.append(part)
            continue
        hops += 1
        if hops > 40:
            return "/\0loop"
        target = _readlink(current)
        if target.startswith("/"):
            parts = []
        pending.extend(target.split("/")[::-1])
    return "/" + "/".join(parts)


def _is_dir(real: str) -> bool:
    try:
        return _stat(real).st_mode & 0o170000 == 0o040000
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------
# Kernel layers (Linux): Landlock and seccomp through raw syscalls, best effort

_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP = 1, 38, 22


def _load_libc() -> None:
    """ctypes is loaded once in the worker; in the child, the audit hook refuses every ctypes call."""
    global _LIBC
    try:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    except Exception:  # noqa: BLE001
        _LIBC = None


def _die_with_parent() -> None:
    """If the supervisor is killed, the candidate dies too instead of sleeping on as an orphan."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _landlock_restrict(root: str) -> bool:
    """Landlock where the kernel has it; False (and nothing changed) where it does not."""
    if _LIBC is None or sys.platform != "linux" or os.uname().machine not in _SYSCALLS:
        return False
    try:
        return _landlock(_LIBC, _SYSCALLS[os.uname().machine], root)
    except OSError:
        return False


def _seccomp_restrict(allow_fork: bool) -> bool:
    """The seccomp filter below (x86_64 only); False where it cannot be installed."""
    if _LIBC is None or sys.platform != "linux" or os.uname().machine != "x86_64":
        return False
    import ctypes

    program = _seccomp_program(os.getpid(), allow_fork)
    filters = (ctypes.c_uint64 * len(program))(*program)
    prog = struct.pack("@HP", len(program), ctypes.addressof(filters))  # struct sock_fprog
    buf = ctypes.create_string_buffer(prog, len(prog))
    if _LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return _LIBC.prctl(_PR_SET_SECCOMP, 2, buf, 0, 0) == 0


# landlock_create_ruleset, landlock_add_rule, landlock_restrict_self (same numbers on both)
_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
_LL_WRITE_FILE, _LL_REMOVE_DIR, _LL_REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
_LL_MAKE_DIR, _LL_MAKE_REG, _LL_TRUNCATE = 1 << 7, 1 << 8, 1 << 14


def _landlock_rights(abi: int) -> tuple[int, int]:
    """(handled, granted beneath the sandbox directory) filesystem rights for this ABI version."""
    handled = (
        1 << 0 | 1 << 1 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 12
    )
    granted = _LL_WRITE_FILE | _LL_REMOVE_DIR | _LL_REMOVE_FILE | _LL_MAKE_DIR | _LL_MAKE_REG
    if abi >= 2:
        handled |= 1 << 13  # REFER: renames across directories
        granted |= 1 << 13
    if abi >= 3:
        handled |= _LL_TRUNCATE
        granted |= _LL_TRUNCATE
    if abi >= 5:
        handled |= 1 << 15  # IOCTL_DEV: no terminal or device ioctls (TIOCSTI)
    return handled, granted


def _landlock(libc, numbers: tuple[int, int, int], root: str) -> bool:
    """Writes only beneath ``root`` (and to /dev/null); no TCP bind/connect; no signals out."""
    import ctypes

    create, add_rule, restrict = numbers
    abi = libc.syscall(create, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    if abi < 1:
        return False
    handled, granted = _landlock_rights(abi)
    net = 0b11 if abi >= 4 else 0  # BIND_TCP | CONNECT_TCP, with no rule allowing any port
    scoped = 0b11 if abi >= 6 else 0  # ABSTRACT_UNIX_SOCKET | SIGNAL
    attr = struct.pack("QQQ", handled, net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    ruleset = libc.syscall(create, ctypes.c_char_p(attr), len(attr), 0)
    if ruleset < 0:
        return False
    try:
        for path, rights in (
            (root, granted),
            (os.devnull, _LL_WRITE_FILE | (_LL_TRUNCATE if abi >= 3 else 0)),
        ):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = struct.pack("=Qi", rights, fd)
                if libc.syscall(add_rule, ruleset, 1, ctypes.c_char_p(rule), 0) != 0:
                    return False
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        return libc.syscall(restrict, ruleset, 0) == 0
    finally:
        os.close(ruleset)


# x86_64 system call numbers the candidate never needs; each answers EPERM.
_SECCOMP_DENY = (
    57, 58, 59, 322,  # fork, vfork, execve, execveat
    42, 43, 46, 49, 50, 288, 307,  # connect, accept, sendmsg, bind, listen, accept4, sendmmsg
    101, 310, 311, 424, 438,  # ptrace, process_vm_readv/writev, pidfd_send_signal, pidfd_getfd
    133, 259, 161, 155, 165, 166, 272, 308,  # mknod(at), chroot, pivot_root, mount, umount2, unshare, setns
    112, 109, 200,  # setsid, setpgid, tkill
    425, 426, 427, 321, 298, 323,  # io_uring_*, bpf, perf_event_open, userfaultfd
    248, 249, 250, 246, 320, 175, 176, 313, 169, 167, 168,  # keys, kexec, modules, reboot, swap
    303, 304, 428, 429, 430, 431, 432, 433, 442,  # handles, new mount API
    163, 164, 227, 159, 170, 171, 172, 173, 179,  # acct, clocks, hostname, io ports, quotactl
)  # fmt: skip
_AUDIT_ARCH_X86_64 = 0xC000003E
_RET_ALLOW, _RET_EPERM, _RET_ENOSYS = 0x7FFF0000, 0x00050001, 0x00050026
_LD, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06


def _seccomp_program(pid: int, allow_fork: bool) -> list[int]:
    """A classic-BPF filter as packed ``sock_filter`` words (code:16, jt:8, jf:8, k:32).

    Threads (clone with CLONE_THREAD) stay allowed; clone3 answers ENOSYS so libc falls back to
    clone, whose flags the filter can read. Sockets: AF_UNIX only (socketpair), and sendto only
    without an address. Signals: only to the candidate itself (kill/tgkill/rt_sigqueueinfo).
    """
    code: list[tuple] = []  # (op, k, jt_label, jf_label) ; labels resolved below
    labels: dict[str, int] = {}

    def emit(op: int, k: int = 0, jt: str | None = None, jf: str | None = None) -> None:
        code.append((op, k, jt, jf))

    def label(name: str) -> None:
        labels[name] = len(code)

    emit(_LD, 4)  # arch
    emit(_JEQ, _AUDIT_ARCH_X86_64, None, "deny")
    emit(_LD, 0)  # syscall number
    emit(_JGE, 0x40000000, "deny", None)  # the x32 ABI
    for nr, target in ((41, "socket"), (56, "clone"), (435, "enosys"), (44, "sendto"), (62, "kill")):
        emit(_JEQ, nr, target, None)
    for nr in (234, 129, 297):  # tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo: first argument is the tgid
        emit(_JEQ, nr, "own_pid", None)
    for nr in _SECCOMP_DENY:
        emit(_JEQ, nr, "deny", None)
    emit(_RET, _RET_ALLOW)
    label("socket")
    emit(_LD, 16)
    emit(_JEQ, 1, "allow", "deny")  # AF_UNIX
    label("clone")
    emit(_LD, 16)
    emit(_JSET, 0x00010000, "allow", "allow" if allow_fork else "deny")  # CLONE_THREAD
    label("sendto")
    emit(_LD, 48)  # dest_addr, low half
    emit(_JEQ, 0, None, "deny")
    emit(_LD, 52)
    emit(_JEQ, 0, "allow", "deny")
    label("kill")
    emit(_LD, 16)
    emit(_JEQ, 0, "allow", None)  # its own process group
    label("own_pid")
    emit(_LD, 16)
    emit(_JEQ, pid, "allow", "deny")
    label("allow")
    emit(_RET, _RET_ALLOW)
    label("deny")
    emit(_RET, _RET_EPERM)
    label("enosys")
    emit(_RET, _RET_ENOSYS)
    return [_bpf_word(i, op, k, jt, jf, labels) for i, (op, k, jt, jf) in enumerate(code)]


def _bpf_word(i: int, op: int, k: int, jt: str | None, jf: str | None, labels: dict[str, int]) -> int:
    def offset(name: str | None) -> int:
        return 0 if name is None else labels[name] - i - 1

    return int.from_bytes(struct.pack("=HBBI", op, offset(jt), offset(jf), k & 0xFFFFFFFF), "little")


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
