"""Give each pipeline job its own GPU: a lease on one device, held through a lock file.

Not part of the CLL paper: pipeline infrastructure (issue 4). Snakemake's ``--resources gpu=4`` only
caps how many ``gpu=1`` jobs run at once; it never says *which* device a job should use, so every job
would start on ``cuda:0``. A lease fixes that:

* there is one lock file per device, ``<lock_dir>/gpu<i>.lock``;
* a job takes a non-blocking ``fcntl.flock`` on each file in turn and the first free device wins;
* the lock belongs to the open file, so it lasts exactly as long as the holding process (the kernel
  drops it when the process exits, even on SIGKILL): there are no stale locks to clean up;
* when every device is taken the job retries every ``POLL_INTERVAL_S`` seconds until ``wait_s``, then
  raises a ``RuntimeError`` naming the lock directory and the device count;
* with no GPU (device count 0) the lease is ``"cpu"`` and the child gets ``CUDA_VISIBLE_DEVICES=""``.

Command line (what the Snakemake rules run)::

    python -m lipcert.gpu_lease [--lock-dir DIR] [--wait SECONDS] -- CMD ARGS...

runs ``CMD`` with ``CUDA_VISIBLE_DEVICES`` set to the leased device (inside ``CMD`` it is then
``cuda:0``), prints one line to stderr saying what it leased, holds the lease until ``CMD`` exits and
exits with ``CMD``'s exit status (``128 + N`` when ``CMD`` was killed by signal ``N``).

Environment: ``LIPCERT_GPU_COUNT`` overrides the device count (to use fewer GPUs than the machine has,
and in tests); ``LIPCERT_GPU_LOCK_DIR`` overrides the lock directory (default
``<tempdir>/lipcert-gpu-locks-<uid>``). All jobs that share GPUs must use the same lock directory.
If this process already runs under a ``CUDA_VISIBLE_DEVICES`` mask (say ``"2,3"`` from a cluster
scheduler), the lease hands out the masked devices (``"2"`` or ``"3"``) and names the lock files after
them, so jobs with different masks on one machine still never share a device.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COUNT_ENV",
    "DEFAULT_WAIT_S",
    "LOCK_DIR_ENV",
    "POLL_INTERVAL_S",
    "Lease",
    "default_lock_dir",
    "device_count",
    "lease_device",
    "main",
]

COUNT_ENV = "LIPCERT_GPU_COUNT"
LOCK_DIR_ENV = "LIPCERT_GPU_LOCK_DIR"
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
DEFAULT_WAIT_S = 600.0
POLL_INTERVAL_S = 0.1


@dataclass(frozen=True)
class Lease:
    """One leased device.

    ``index`` is the device's position among the devices this process can see (``None`` on CPU), and
    ``device`` the matching torch device string for *this* process (``"cuda:<index>"`` or ``"cpu"``).
    ``env`` holds the ``CUDA_VISIBLE_DEVICES`` value for a child process: the child sees only the
    leased device, as ``cuda:0`` (or no device at all: ``""`` on CPU). ``lock_path`` is the held lock
    file (``None`` on CPU).
    """

    index: int | None
    device: str
    env: Mapping[str, str]
    lock_path: Path | None


def _non_negative_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def device_count() -> int:
    """Number of GPUs to hand out (pipeline infrastructure, not from the paper).

    ``LIPCERT_GPU_COUNT`` when set (a non-negative integer; ``0`` forces CPU), else
    ``torch.cuda.device_count()`` (torch is imported only then).
    """
    raw = os.environ.get(COUNT_ENV)
    if raw is not None:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"{COUNT_ENV} must be a non-negative integer, got {raw!r}") from None
        if value < 0:
            raise ValueError(f"{COUNT_ENV} must be a non-negative integer, got {raw!r}")
        return value
    import torch

    return int(torch.cuda.device_count())


def default_lock_dir() -> Path:
    """Lock directory shared by all leases of this user (pipeline infrastructure, not from the paper).

    ``LIPCERT_GPU_LOCK_DIR`` when set and non-empty, else ``<tempdir>/lipcert-gpu-locks-<uid>``.
    """
    configured = os.environ.get(LOCK_DIR_ENV, "").strip()
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"lipcert-gpu-locks-{os.getuid()}"


def _visible_ids(count: int) -> list[str]:
    """Device ids to put in the child's ``CUDA_VISIBLE_DEVICES``, one per leasable device."""
    mask = os.environ.get(VISIBLE_ENV)
    if mask is None:
        return [str(i) for i in range(count)]
    entries = [entry.strip() for entry in mask.split(",") if entry.strip()]
    if count > len(entries):
        raise ValueError(f"device count {count} exceeds the {len(entries)} device(s) this process may use "
                         f"({VISIBLE_ENV}={mask!r}); lower {COUNT_ENV} or widen the mask")
    return entries[:count]


def _lock_name(device_id: str) -> str:
    return "gpu" + re.sub(r"[^A-Za-z0-9_.-]", "_", device_id) + ".lock"


def _try_lock(path: Path) -> int | None:
    """Open ``path`` and take a non-blocking exclusive flock; the open fd, or None when it is held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    # Record the holder for humans reading the lock directory; the lock itself is the flock.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _holders(lock_dir: Path, ids: Sequence[str]) -> str:
    parts = []
    for device_id in ids:
        try:
            pid = (lock_dir / _lock_name(device_id)).read_text().strip() or "?"
        except OSError:
            pid = "?"
        parts.append(f"{_lock_name(device_id)}: pid {pid}")
    return "; ".join(parts)


@contextlib.contextmanager
def _held_lease(lock_dir: str | os.PathLike[str] | None, count: int | None,
                wait_s: float) -> Iterator[tuple[Lease, int | None]]:
    """Acquire a lease; yield it with the lock's fd (None on CPU); release on exit."""
    if count is None:
        count = device_count()
    count = _non_negative_int(count, "count")
    if isinstance(wait_s, bool) or not isinstance(wait_s, (int, float)) or not wait_s >= 0:
        raise ValueError(f"wait_s must be a non-negative number of seconds, got {wait_s!r}")
    if count == 0:
        yield Lease(index=None, device="cpu", env={VISIBLE_ENV: ""}, lock_path=None), None
        return
    ids = _visible_ids(count)
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    deadline = time.monotonic() + float(wait_s)
    while True:
        for index, device_id in enumerate(ids):
            path = directory / _lock_name(device_id)
            fd = _try_lock(path)
            if fd is None:
                continue
            try:
                yield Lease(index=index, device=f"cuda:{index}", env={VISIBLE_ENV: device_id},
                            lock_path=path), fd
            finally:
                os.close(fd)  # closing the only fd of this open file drops the flock
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"no free GPU after waiting {float(wait_s):g} s: all {count} device(s) are "
                               f"leased in lock dir {str(directory)!r} ({_holders(directory, ids)}); "
                               f"wait longer, or run fewer gpu=1 jobs than {COUNT_ENV}/the GPU count")
        time.sleep(min(POLL_INTERVAL_S, remaining))


@contextlib.contextmanager
def lease_device(lock_dir: str | os.PathLike[str] | None = None, count: int | None = None,
                 wait_s: float = DEFAULT_WAIT_S) -> Iterator[Lease]:
    """Lease one device for the duration of the ``with`` block (pipeline infrastructure, not from the paper).

    Tries ``<lock_dir>/gpu<i>.lock`` for ``i`` in ``range(count)`` with a non-blocking flock; the first
    free one wins. ``count`` defaults to :func:`device_count`, ``lock_dir`` to :func:`default_lock_dir`.
    When all devices are leased, retries every ``POLL_INTERVAL_S`` s until ``wait_s`` s have passed, then
    raises ``RuntimeError`` naming the lock dir and count. ``count == 0`` yields a CPU lease at once.
    """
    with _held_lease(lock_dir, count, wait_s) as (lease, _fd):
        yield lease


def _exit_status(returncode: int) -> int:
    """Shell convention: a child killed by signal N exits the wrapper with 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _describe(lease: Lease) -> str:
    if lease.index is None:
        return f"leased cpu (no GPU; {VISIBLE_ENV}='')"
    return (f"leased GPU {lease.env[VISIBLE_ENV]} ({VISIBLE_ENV}={lease.env[VISIBLE_ENV]}, cuda:0 in the job; "
            f"lock {lease.lock_path})")


def _run_leased(command: Sequence[str], lock_dir: str | None, wait_s: float) -> int:
    with _held_lease(lock_dir, None, wait_s) as (lease, fd):
        print(f"lipcert.gpu_lease: pid {os.getpid()} {_describe(lease)}", file=sys.stderr, flush=True)
        env = {**os.environ, **lease.env}
        # The child inherits the lock's fd: the lease then lasts until the child exits even if this
        # wrapper dies first, and the device is never handed out while the child still uses it.
        pass_fds = (fd,) if fd is not None else ()
        try:
            child = subprocess.Popen(list(command), env=env, pass_fds=pass_fds)
        except FileNotFoundError:
            print(f"lipcert.gpu_lease: command not found: {command[0]!r}", file=sys.stderr)
            return 127
        except PermissionError:
            print(f"lipcert.gpu_lease: command not executable: {command[0]!r}", file=sys.stderr)
            return 126

        def forward(signum, _frame):
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

        # SIGTERM/SIGHUP (a cancelled job) go on to the child; Ctrl-C already reaches the whole
        # foreground process group, so the wrapper just ignores SIGINT and waits for the child.
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
                    signal.SIGHUP: signal.signal(signal.SIGHUP, forward),
                    signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
        try:
            returncode = child.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return _exit_status(returncode)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lipcert.gpu_lease [--lock-dir D] [--wait S] -- CMD ...`` (pipeline infrastructure).

    Leases a device, runs ``CMD`` with ``CUDA_VISIBLE_DEVICES`` set to it (``""`` on CPU), holds the
    lease until ``CMD`` exits and returns ``CMD``'s exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m lipcert.gpu_lease",
        description="Run CMD on a GPU of its own: lease a device via a lock file and set CUDA_VISIBLE_DEVICES.")
    parser.add_argument("--lock-dir", default=None,
                        help=f"lock directory (default: ${LOCK_DIR_ENV} or <tempdir>/lipcert-gpu-locks-<uid>)")
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT_S,
                        help=f"seconds to wait for a free device before failing (default {DEFAULT_WAIT_S:g})")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("missing command: use  python -m lipcert.gpu_lease -- CMD ARGS...")
    try:
        return _run_leased(command, args.lock_dir, args.wait)
    except (RuntimeError, ValueError) as exc:
        print(f"lipcert.gpu_lease: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
