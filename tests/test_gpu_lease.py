"""GPU lease: distinct devices (and slots) for concurrent jobs, waiting, CPU fallback, crash safety, the CLI.

Device counts are faked with ``LIPCERT_GPU_COUNT`` and every test uses its own lock directory, so the
tests need no GPU and do not touch the leases of real jobs. On a machine with fewer real GPUs than a
test fakes, ``LIPCERT_GPU_COUNT`` is rightly refused: those tests are then skipped (see ``_fake_gpus``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lipcert.gpu_lease import (Lease, check_slots_request, default_lock_dir, device_count, lease_device,
                               slots_per_device)

SRC = Path(__file__).resolve().parents[1] / "src"

# Child command run under the wrapper: records CUDA_VISIBLE_DEVICES (None when unset) and the time it
# held the device, then (optionally) waits for N records to exist or sleeps, and exits with a code.
RECORDER = textwrap.dedent("""
    import json, os, sys, time
    out, barrier, sleep_s, code = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    start = time.time()
    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if barrier:
        rec_dir = os.path.dirname(out)
        deadline = time.time() + 10
        open(out + ".arrived", "w").close()
        while sum(f.endswith(".arrived") for f in os.listdir(rec_dir)) < barrier and time.time() < deadline:
            time.sleep(0.01)
    time.sleep(sleep_s)
    end = time.time()
    with open(out + ".tmp", "w") as fh:
        json.dump({"cvd": seen, "start": start, "end": end, "pid": os.getpid()}, fh)
    os.replace(out + ".tmp", out)
    sys.exit(code)
""")


def _fake_gpus(n: int) -> None:
    """Skip the test when torch sees 1..n-1 real GPUs: ``LIPCERT_GPU_COUNT=n`` is then refused by design."""
    import torch

    real = torch.cuda.device_count()
    if 0 < real < n:
        pytest.skip(f"fakes {n} GPUs via LIPCERT_GPU_COUNT in a subprocess, but this machine has {real}")


def _env(count: int | None, lock_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CUDA_VISIBLE_DEVICES", "LIPCERT_GPU_COUNT", "LIPCERT_GPU_SLOTS")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env["LIPCERT_GPU_LOCK_DIR"] = str(lock_dir)
    if count is not None:
        env["LIPCERT_GPU_COUNT"] = str(count)
    env.update(extra)
    return env


def _wrapper(record: Path, *, barrier: int = 0, sleep_s: float = 0.0, code: int = 0,
             wrapper_args: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "lipcert.gpu_lease", *wrapper_args, "--",
            sys.executable, "-c", RECORDER, str(record), str(barrier), str(sleep_s), str(code)]


def _records(directory: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("job*.json"))]


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant (sweep over start/end events; an end before a start at a tie)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda t: (t[0], t[1]))
    open_now = best = 0
    for _, delta in events:
        open_now += delta
        best = max(best, open_now)
    return best


@pytest.fixture
def no_mask(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("LIPCERT_GPU_COUNT", raising=False)
    monkeypatch.delenv("LIPCERT_GPU_SLOTS", raising=False)


@pytest.fixture
def cpu_torch(monkeypatch):
    """torch sees no CUDA device, so any LIPCERT_GPU_COUNT is taken as is (as on a CPU-only machine)."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_max_overlap_helper_against_hand_counts():
    assert _max_overlap([(0, 1), (1, 2), (2, 3)]) == 1
    assert _max_overlap([(0, 3), (1, 2), (1.5, 4)]) == 3
    assert _max_overlap([(0, 2), (1, 3), (2.5, 4)]) == 2


def test_device_count_reads_env(cpu_torch, monkeypatch):
    monkeypatch.setenv("LIPCERT_GPU_COUNT", " 3 ")
    assert device_count() == 3
    monkeypatch.setenv("LIPCERT_GPU_COUNT", "0")
    assert device_count() == 0
    for bad in ("-1", "two", "1.5", ""):
        monkeypatch.setenv("LIPCERT_GPU_COUNT", bad)
        with pytest.raises(ValueError, match="LIPCERT_GPU_COUNT"):
            device_count()


def test_device_count_without_env_asks_torch(monkeypatch):
    import torch

    monkeypatch.delenv("LIPCERT_GPU_COUNT", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 5)
    assert device_count() == 5


def test_default_lock_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LIPCERT_GPU_LOCK_DIR", str(tmp_path / "locks"))
    assert default_lock_dir() == tmp_path / "locks"
    monkeypatch.delenv("LIPCERT_GPU_LOCK_DIR")
    assert default_lock_dir().name == f"lipcert-gpu-locks-{os.getuid()}"


def test_leases_in_one_process_are_distinct_and_freed_on_exit(no_mask, tmp_path):
    with lease_device(tmp_path, count=3, wait_s=0) as a, lease_device(tmp_path, count=3, wait_s=0) as b:
        assert (a.index, a.device, dict(a.env)) == (0, "cuda:0", {"CUDA_VISIBLE_DEVICES": "0"})
        assert (b.index, b.device, dict(b.env)) == (1, "cuda:1", {"CUDA_VISIBLE_DEVICES": "1"})
        assert (a.slot, b.slot) == (0, 0)
        assert a.lock_path == tmp_path / "gpu0.slot0.lock"
        assert a.lock_path.read_text().strip() == str(os.getpid())
        with lease_device(tmp_path, count=3, wait_s=0) as c:
            assert c.index == 2
            with pytest.raises(RuntimeError):
                with lease_device(tmp_path, count=3, wait_s=0):
                    pass
    # all released: the first free index is 0 again
    with lease_device(tmp_path, count=3, wait_s=0) as again:
        assert again.index == 0


def test_freed_index_is_reused_first(no_mask, tmp_path):
    with lease_device(tmp_path, count=3, wait_s=0) as a:
        with lease_device(tmp_path, count=3, wait_s=0) as b:
            assert b.index == 1
        with lease_device(tmp_path, count=3, wait_s=0) as c:
            assert (a.index, c.index) == (0, 1)


def test_lease_released_when_body_raises(no_mask, tmp_path):
    with pytest.raises(KeyError):
        with lease_device(tmp_path, count=1, wait_s=0):
            raise KeyError("boom")
    with lease_device(tmp_path, count=1, wait_s=0) as lease:
        assert lease.index == 0


def test_count_zero_is_cpu(no_mask, tmp_path):
    with lease_device(tmp_path, count=0, wait_s=0) as lease:
        assert lease == Lease(index=None, device="cpu", env={"CUDA_VISIBLE_DEVICES": ""}, lock_path=None,
                              slot=None)
    assert not any(tmp_path.iterdir())  # no lock files for the CPU


def test_count_defaults_to_env(no_mask, cpu_torch, monkeypatch, tmp_path):
    monkeypatch.setenv("LIPCERT_GPU_COUNT", "1")
    with lease_device(tmp_path, wait_s=0) as lease:
        assert lease.device == "cuda:0"
        with pytest.raises(RuntimeError, match="all 1 device"):
            with lease_device(tmp_path, wait_s=0):
                pass


def test_timeout_error_names_lock_dir_and_count(no_mask, tmp_path):
    with lease_device(tmp_path, count=2, wait_s=0), lease_device(tmp_path, count=2, wait_s=0):
        t0 = time.monotonic()
        with pytest.raises(RuntimeError) as info:
            with lease_device(tmp_path, count=2, wait_s=0.3):
                pass
        waited = time.monotonic() - t0
    message = str(info.value)
    assert str(tmp_path) in message and "all 2 device(s)" in message and "0.3 s" in message
    assert f"pid {os.getpid()}" in message  # names who holds the locks
    assert 0.3 <= waited < 2.0


def test_bad_arguments_raise_value_error(no_mask, tmp_path):
    for bad_count in (-1, 1.5, True):
        with pytest.raises(ValueError, match="count"):
            with lease_device(tmp_path, count=bad_count):
                pass
    for bad_wait in (-1, float("nan"), "10"):
        with pytest.raises(ValueError, match="wait_s"):
            with lease_device(tmp_path, count=1, wait_s=bad_wait):
                pass


def test_existing_cuda_mask_is_respected(no_mask, monkeypatch, tmp_path):
    # A scheduler gave this process physical GPUs 2 and 3: leases must hand out "2" and "3", and lock
    # files named after the physical devices so that jobs with other masks never share one.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with lease_device(tmp_path, count=2, wait_s=0) as a, lease_device(tmp_path, count=2, wait_s=0) as b:
        assert (a.index, a.device, a.env["CUDA_VISIBLE_DEVICES"]) == (0, "cuda:0", "2")
        assert (b.index, b.device, b.env["CUDA_VISIBLE_DEVICES"]) == (1, "cuda:1", "3")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu2.slot0.lock", "gpu3.slot0.lock"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with lease_device(tmp_path, count=1, wait_s=0) as c:
        assert c.lock_path == tmp_path / "gpu3.slot0.lock"
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,2")
        with lease_device(tmp_path, count=2, wait_s=0) as d:  # physical 3 is taken: gets 2
            assert (d.index, d.env["CUDA_VISIBLE_DEVICES"]) == (1, "2")
    with pytest.raises(ValueError, match="exceeds"):
        with lease_device(tmp_path, count=3, wait_s=0):
            pass


def test_four_concurrent_jobs_get_four_distinct_devices(tmp_path):
    _fake_gpus(4)
    locks, recs = tmp_path / "locks", tmp_path / "recs"
    recs.mkdir()
    env = _env(4, locks)
    # Every child waits until all four are running, so the four leases are held at the same time.
    procs = [subprocess.Popen(_wrapper(recs / f"job{i}.json", barrier=4), env=env, stderr=subprocess.PIPE,
                              text=True) for i in range(4)]
    errs = [p.communicate(timeout=30)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errs
    records = _records(recs)
    assert len(records) == 4
    assert max(r["start"] for r in records) < min(r["end"] for r in records)  # truly concurrent
    assert sorted(r["cvd"] for r in records) == ["0", "1", "2", "3"]
    for err in errs:
        assert len(err.strip().splitlines()) == 1 and "leased GPU" in err


def test_two_devices_four_jobs_wait_and_reuse(tmp_path):
    _fake_gpus(2)
    locks, recs = tmp_path / "locks", tmp_path / "recs"
    recs.mkdir()
    env = _env(2, locks)
    # Hold both devices here first, so all four jobs are certainly waiting when they are released.
    with lease_device(locks, count=2, wait_s=0), lease_device(locks, count=2, wait_s=0):
        procs = [subprocess.Popen(_wrapper(recs / f"job{i}.json", sleep_s=0.6, wrapper_args=("--wait", "20")),
                                  env=env) for i in range(4)]
        try:
            time.sleep(1.0)
            assert all(p.poll() is None for p in procs)  # blocked on the lease
            assert _records(recs) == []
        except BaseException:
            for p in procs:
                p.kill()
            raise
        released = time.time()
    assert [p.wait(timeout=30) for p in procs] == [0, 0, 0, 0]
    records = _records(recs)
    assert len(records) == 4
    assert all(r["start"] >= released for r in records)
    assert _max_overlap([(r["start"], r["end"]) for r in records]) <= 2
    by_device: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        by_device.setdefault(r["cvd"], []).append((r["start"], r["end"]))
    assert set(by_device) == {"0", "1"}  # the freed indices are reused
    for intervals in by_device.values():
        assert _max_overlap(intervals) == 1  # never two jobs on one device
    # two waves of 0.6 s: the last job cannot finish before 1.2 s after the release
    assert max(r["end"] for r in records) - released >= 1.2


def test_cli_cpu_sets_empty_visible_devices(tmp_path):
    rec = tmp_path / "job0.json"
    env = _env(0, tmp_path / "locks", CUDA_VISIBLE_DEVICES="0,1")
    done = subprocess.run(_wrapper(rec), env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(rec.read_text())["cvd"] == ""
    assert "leased cpu" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_cli_forwards_exit_code(tmp_path):
    env = _env(1, tmp_path / "locks")
    done = subprocess.run(_wrapper(tmp_path / "job0.json", code=7), env=env, capture_output=True, timeout=30)
    assert done.returncode == 7
    killed = subprocess.run([sys.executable, "-m", "lipcert.gpu_lease", "--", sys.executable, "-c",
                             "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                            env=env, capture_output=True, timeout=30)
    assert killed.returncode == 128 + signal.SIGKILL
    missing = subprocess.run([sys.executable, "-m", "lipcert.gpu_lease", "--", str(tmp_path / "no-such-cmd")],
                             env=env, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 127 and "command not found" in missing.stderr
    usage = subprocess.run([sys.executable, "-m", "lipcert.gpu_lease"], env=env, capture_output=True, text=True,
                           timeout=30)
    assert usage.returncode == 2 and "missing command" in usage.stderr


def test_cli_timeout_fails_with_message(tmp_path):
    locks = tmp_path / "locks"
    env = _env(1, locks)
    with lease_device(locks, count=1, wait_s=0):
        done = subprocess.run(_wrapper(tmp_path / "job0.json", wrapper_args=("--wait", "0.2")), env=env,
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "no free GPU" in done.stderr and str(locks) in done.stderr and "all 1 device(s)" in done.stderr
    assert not (tmp_path / "job0.json").exists()  # the command never ran


HOLDER = textwrap.dedent("""
    import sys, time
    from lipcert.gpu_lease import lease_device
    with lease_device(sys.argv[1], count=1, wait_s=5) as lease:
        print(lease.device, flush=True)
        time.sleep(60)
""")


def test_sigkilled_holder_frees_its_lease(no_mask, tmp_path):
    env = _env(None, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "cuda:0"
        with pytest.raises(RuntimeError):
            with lease_device(tmp_path, count=1, wait_s=0):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        holder.stdout.close()
    with lease_device(tmp_path, count=1, wait_s=2) as lease:  # no stale lock left behind
        assert lease.index == 0


def test_cli_lease_lasts_until_child_exits_even_if_wrapper_dies(no_mask, tmp_path):
    locks, go, started = tmp_path / "locks", tmp_path / "go", tmp_path / "started"
    env = _env(1, locks)
    child = (f"import os, time\nopen({str(started)!r}, 'w').close()\n"
             f"while not os.path.exists({str(go)!r}): time.sleep(0.02)")
    wrapper = subprocess.Popen([sys.executable, "-m", "lipcert.gpu_lease", "--", sys.executable, "-c", child],
                               env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert "leased GPU 0" in wrapper.stderr.readline()
        deadline = time.monotonic() + 10
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started.exists()
        wrapper.send_signal(signal.SIGKILL)  # only the wrapper; its child keeps running on the GPU
        wrapper.wait(timeout=10)
        with pytest.raises(RuntimeError):
            with lease_device(locks, count=1, wait_s=0.2):
                pass
        go.touch()  # the child exits now
        with lease_device(locks, count=1, wait_s=5) as lease:
            assert lease.index == 0
    finally:
        go.touch()
        wrapper.stderr.close()
        if wrapper.poll() is None:
            os.killpg(wrapper.pid, signal.SIGKILL)


def test_cli_forwards_sigterm_to_child(tmp_path):
    started = tmp_path / "started"
    env = _env(1, tmp_path / "locks")
    child = ("import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, lambda *_: sys.exit(5))\n"
             f"open({str(started)!r}, 'w').close()\n"
             "time.sleep(30)\n"
             "sys.exit(0)")
    wrapper = subprocess.Popen([sys.executable, "-m", "lipcert.gpu_lease", "--", sys.executable, "-c", child],
                               env=env, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started.exists()
        wrapper.send_signal(signal.SIGTERM)  # to the wrapper only, as a cancelled job would get it
        assert wrapper.wait(timeout=10) == 5  # the child saw SIGTERM and its exit code came through
    finally:
        if wrapper.poll() is None:
            os.killpg(wrapper.pid, signal.SIGKILL)


# --- slots: several jobs per GPU -------------------------------------------------------------------


def test_slots_per_device_reads_env(monkeypatch):
    monkeypatch.delenv("LIPCERT_GPU_SLOTS", raising=False)
    assert slots_per_device() == 1
    monkeypatch.setenv("LIPCERT_GPU_SLOTS", " 3 ")
    assert slots_per_device() == 3
    for bad in ("0", "-1", "two", "1.5", ""):
        monkeypatch.setenv("LIPCERT_GPU_SLOTS", bad)
        with pytest.raises(ValueError) as info:
            slots_per_device()
        assert str(info.value) == f"LIPCERT_GPU_SLOTS must be a positive integer, got {bad!r}"


def test_two_slots_share_one_device_and_a_third_waits(no_mask, tmp_path):
    with lease_device(tmp_path, count=1, wait_s=0, slots=2) as a, lease_device(tmp_path, count=1, wait_s=0,
                                                                                slots=2) as b:
        assert (a.index, a.device, dict(a.env), a.slot) == (0, "cuda:0", {"CUDA_VISIBLE_DEVICES": "0"}, 0)
        assert (b.index, b.device, dict(b.env), b.slot) == (0, "cuda:0", {"CUDA_VISIBLE_DEVICES": "0"}, 1)
        assert (a.lock_path, b.lock_path) == (tmp_path / "gpu0.slot0.lock", tmp_path / "gpu0.slot1.lock")
        t0 = time.monotonic()
        with pytest.raises(RuntimeError) as info:
            with lease_device(tmp_path, count=1, wait_s=0.3, slots=2):
                pass
        assert time.monotonic() - t0 >= 0.3  # it waited before giving up
    message = str(info.value)
    assert "all 1 device(s) x 2 slot(s) are leased" in message and str(tmp_path) in message
    assert "gpu0.slot1.lock: pid" in message
    with lease_device(tmp_path, count=1, wait_s=0, slots=2) as again:  # all released
        assert again.slot == 0


def test_slots_default_to_env(no_mask, monkeypatch, tmp_path):
    monkeypatch.setenv("LIPCERT_GPU_SLOTS", "2")
    with lease_device(tmp_path, count=1, wait_s=0) as a, lease_device(tmp_path, count=1, wait_s=0) as b:
        assert (a.slot, b.slot) == (0, 1)
        with pytest.raises(RuntimeError, match=r"x 2 slot\(s\)"):
            with lease_device(tmp_path, count=1, wait_s=0):
                pass
        with lease_device(tmp_path, count=1, wait_s=0, slots=3) as c:  # the parameter overrides the env var
            assert c.slot == 2


def test_slots_spread_across_devices_before_doubling_up(no_mask, tmp_path):
    with contextlib.ExitStack() as stack:
        leases = [stack.enter_context(lease_device(tmp_path, count=2, wait_s=0, slots=2)) for _ in range(4)]
        assert [(lease.index, lease.slot) for lease in leases] == [(0, 0), (1, 0), (0, 1), (1, 1)]
        assert leases[0].index != leases[1].index  # the first two jobs get different GPUs
        with pytest.raises(RuntimeError, match=r"all 2 device\(s\) x 2 slot\(s\)"):
            with lease_device(tmp_path, count=2, wait_s=0, slots=2):
                pass
        stack.close()  # frees all four
        with lease_device(tmp_path, count=2, wait_s=0, slots=2) as first:
            assert (first.index, first.slot) == (0, 0)


def test_bad_slots_raise_value_error(no_mask, monkeypatch, tmp_path):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=f"slots must be a positive integer, got {bad!r}"):
            with lease_device(tmp_path, count=1, wait_s=0, slots=bad):
                pass
    monkeypatch.setenv("LIPCERT_GPU_SLOTS", "0")
    with pytest.raises(ValueError, match="LIPCERT_GPU_SLOTS must be a positive integer, got '0'"):
        with lease_device(tmp_path, count=1, wait_s=0):
            pass
    assert not any(tmp_path.iterdir())  # rejected before any lock file was made


def test_cli_bad_slots_fail_at_once(tmp_path):
    rec = tmp_path / "job0.json"
    env = _env(1, tmp_path / "locks", LIPCERT_GPU_SLOTS="0")
    done = subprocess.run(_wrapper(rec), env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "LIPCERT_GPU_SLOTS must be a positive integer, got '0'" in done.stderr
    for bad in ("0", "x"):
        done = subprocess.run(_wrapper(rec, wrapper_args=("--slots", bad)), env=_env(1, tmp_path / "locks"),
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and f"--slots must be a positive integer, got {bad!r}" in done.stderr
    assert not rec.exists()  # the command never ran
    # --slots overrides the (bad) env var
    done = subprocess.run(_wrapper(rec, wrapper_args=("--slots", "2")), env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert "leased GPU 0 slot 0 of 2" in done.stderr


def test_cli_two_slots_run_two_jobs_on_one_device(tmp_path):
    locks, recs = tmp_path / "locks", tmp_path / "recs"
    recs.mkdir()
    env = _env(1, locks)
    procs = [subprocess.Popen(_wrapper(recs / f"job{i}.json", barrier=2, wrapper_args=("--slots", "2")),
                              env=env, stderr=subprocess.PIPE, text=True) for i in range(2)]
    errs = [p.communicate(timeout=30)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    records = _records(recs)
    assert [r["cvd"] for r in records] == ["0", "0"]  # both on GPU 0, each sees it as cuda:0
    assert max(r["start"] for r in records) < min(r["end"] for r in records)  # truly concurrent
    assert sorted("slot 0 of 2" in e for e in errs) == [False, True]
    assert sorted("slot 1 of 2" in e for e in errs) == [False, True]
    # both slots held: a third job times out with a message about slots
    with lease_device(locks, count=1, wait_s=0, slots=2), lease_device(locks, count=1, wait_s=0, slots=2):
        done = subprocess.run(_wrapper(recs / "job9.json", wrapper_args=("--slots", "2", "--wait", "0.2")),
                              env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "all 1 device(s) x 2 slot(s) are leased" in done.stderr


def test_check_slots_request(no_mask, cpu_torch, monkeypatch):
    assert check_slots_request(4, count=2, slots=2) == 4
    assert check_slots_request(1, count=2, slots=2) == 4
    with pytest.raises(ValueError) as info:
        check_slots_request(8, count=2, slots=2)
    assert str(info.value) == ("--resources gpu=8 asks for 8 concurrent GPU jobs, but 2 device(s) x 2 slot(s) "
                               "= 4 exist; raise LIPCERT_GPU_SLOTS or lower gpu=")
    assert check_slots_request(16, count=0, slots=1) == 0  # CPU only: the jobs run on the CPU
    monkeypatch.setenv("LIPCERT_GPU_COUNT", "2")
    monkeypatch.setenv("LIPCERT_GPU_SLOTS", "3")
    assert check_slots_request(6) == 6
    with pytest.raises(ValueError, match=r"2 device\(s\) x 3 slot\(s\) = 6 exist"):
        check_slots_request(7)
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="requested must be a non-negative integer"):
            check_slots_request(bad, count=1, slots=1)
    with pytest.raises(ValueError, match="slots must be a positive integer"):
        check_slots_request(1, count=1, slots=0)


def test_cli_check_request(tmp_path):
    _fake_gpus(2)

    def check(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lipcert.gpu_lease", *args], env=_env(2, tmp_path, **extra),
                              capture_output=True, text=True, timeout=30)

    ok = check("--check-request", "4", LIPCERT_GPU_SLOTS="2")
    assert ok.returncode == 0 and ok.stdout.count("\n") == 1 and "OK" in ok.stdout, ok.stderr
    too_many = check("--check-request", "8", LIPCERT_GPU_SLOTS="2")
    assert too_many.returncode == 1 and too_many.stdout == ""
    assert ("--resources gpu=8 asks for 8 concurrent GPU jobs, but 2 device(s) x 2 slot(s) = 4 exist; "
            "raise LIPCERT_GPU_SLOTS or lower gpu=") in too_many.stderr
    assert check("--slots", "4", "--check-request", "8").returncode == 0  # --slots overrides the env var
    assert check("--check-request", "8", LIPCERT_GPU_COUNT="0").returncode == 0  # CPU only
    bad = check("--check-request", "x")
    assert bad.returncode == 2 and "--check-request must be a non-negative integer, got 'x'" in bad.stderr
    with_command = check("--check-request", "1", "--", sys.executable, "-c", "pass")
    assert with_command.returncode == 2 and "runs no command" in with_command.stderr
    assert not list(tmp_path.iterdir())  # no locks taken


def test_gpu_count_above_torch_devices_is_refused(no_mask, monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LIPCERT_GPU_COUNT", "2")
    with pytest.raises(ValueError) as info:
        device_count()
    message = str(info.value)
    assert "LIPCERT_GPU_COUNT=2" in message and "only 1" in message
    with pytest.raises(ValueError, match="LIPCERT_GPU_COUNT=2"):
        with lease_device(tmp_path, wait_s=0):
            pass
    monkeypatch.setenv("LIPCERT_GPU_COUNT", "1")  # at most what torch sees: fine
    assert device_count() == 1
    monkeypatch.setenv("LIPCERT_GPU_COUNT", "0")
    assert device_count() == 0
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # no CUDA device seen: taken as is (tests)
    monkeypatch.setenv("LIPCERT_GPU_COUNT", "2")
    assert device_count() == 2
