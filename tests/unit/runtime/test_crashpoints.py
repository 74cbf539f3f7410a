from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from service.runtime.crashpoints import CrashPoints


def test_unset_is_inert() -> None:
    points = CrashPoints({})
    assert not points.armed
    for _ in range(3):
        points.reached("state_persisted")


def test_bad_spec_names_the_variable() -> None:
    with pytest.raises(ValueError, match="DSTREAMS_CRASH_AT='nowhere': unknown step"):
        CrashPoints({"DSTREAMS_CRASH_AT": "nowhere"})


def test_kills_at_the_nth_arrival() -> None:
    code = (
        "from service.runtime.crashpoints import CrashPoints\n"
        "p = CrashPoints({'DSTREAMS_CRASH_AT': 'outputs_done:3'})\n"
        "for i in range(1, 6):\n"
        "    print(i, flush=True)\n"
        "    p.reached('outputs_done')\n"
        "    p.reached('batch_taken')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == -9
    assert result.stdout.split() == ["1", "2", "3"]


def test_sigstops_another_process_at_the_nth_arrival_once() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        points = CrashPoints({"DSTREAMS_SIGSTOP_AT": f"commit_transaction:2:{sleeper.pid}"})
        assert points.armed
        points.reached("commit_transaction")
        assert not stopped(sleeper.pid, wait_s=0.5)
        points.reached("commit_transaction")
        assert stopped(sleeper.pid)
        os.kill(sleeper.pid, signal.SIGCONT)
        points.reached("commit_transaction")  # once only
        assert not stopped(sleeper.pid, wait_s=0.5)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_sigstop_needs_a_pid() -> None:
    with pytest.raises(ValueError, match="give the pid"):
        CrashPoints({"DSTREAMS_SIGSTOP_AT": "commit_transaction:1"})


def stopped(pid: int, wait_s: float = 5.0) -> bool:
    """Whether the process is (or within ``wait_s`` becomes) stopped, per /proc/<pid>/stat."""
    deadline = time.monotonic() + wait_s
    while True:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "T":
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
