from __future__ import annotations

import subprocess
import sys

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
