"""Loading jobs in their three shapes and stopping them on a signal, without any service."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from service import config
from service.config import Settings
from service.runner import JobError, resolve_job, run_job


def conf(**kw: object) -> Settings:
    base: dict[str, object] = {"kafka_bootstrap_servers": "k:9092", "redis_url": "redis://r:1/0"}
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def write(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code), encoding="utf-8")
    return path


def test_file_kinds_are_told_apart_without_running_the_file(tmp_path: Path) -> None:
    boom = "raise RuntimeError('executed')\n"
    script = write(tmp_path / "script.py", boom + "if __name__ == '__main__':\n    pass\n")
    main = write(tmp_path / "with_main.py", boom + "def main():\n    pass\n")
    setup = write(tmp_path / "with_setup.py", boom + "def setup(ssc):\n    pass\n")
    build = write(tmp_path / "with_build.py", boom + "def build(ssc):\n    pass\n")
    guarded_main = write(
        tmp_path / "guarded.py", "def main():\n    pass\nif __name__ == '__main__':\n    main()\n"
    )
    assert resolve_job(str(script)).kind == "script"
    assert resolve_job(str(main)).kind == "main"
    assert resolve_job(str(setup)).kind == "setup"
    assert resolve_job(str(build)).function == "build"
    # a main() called under the __main__ guard runs once, as a script
    assert resolve_job(str(guarded_main)).kind == "script"
    assert resolve_job(str(script)).name == "script"


def test_module_function_kinds_follow_the_signature() -> None:
    assert resolve_job("json:dumps").kind == "setup"  # one required argument
    job = resolve_job("textwrap:dedent")
    assert (job.kind, job.module, job.function) == ("setup", "textwrap", "dedent")
    assert resolve_job("uuid:uuid4").kind == "main"
    with pytest.raises(JobError, match="no function"):
        resolve_job("json:nope")
    with pytest.raises(JobError, match="should take"):
        resolve_job("shutil:move")
    with pytest.raises(JobError, match="cannot import"):
        resolve_job("no_such_module_here:main")


def test_missing_or_broken_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="not found"):
        resolve_job(str(tmp_path / "absent.py"))
    broken = write(tmp_path / "broken.py", "def (:\n")
    with pytest.raises(JobError, match="does not parse"):
        resolve_job(str(broken))


def test_a_job_sees_the_runner_settings_and_its_arguments(tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    job = write(
        tmp_path / "report.py",
        f"""
        import json, sys
        from service.config import settings

        if __name__ == "__main__":
            s = settings()
            with open({str(out)!r}, "w") as f:
                json.dump([s.job_name, s.group_id, s.kafka_bootstrap_servers, sys.argv[1:]], f)
        """,
    )
    assert run_job(str(job), ["a", "b"], conf()) == 0
    assert json.loads(out.read_text()) == ["report", "dstreams-report", "k:9092", ["a", "b"]]
    # outside the runner, settings come from the environment again
    assert config._active_settings is None


def test_a_job_exit_code_is_returned(tmp_path: Path) -> None:
    job = write(tmp_path / "usage.py", "import sys\nif __name__ == '__main__':\n    sys.exit(3)\n")
    assert run_job(str(job), [], conf()) == 3


def test_sigterm_stops_a_running_job_after_its_batch_and_returns_zero(tmp_path: Path) -> None:
    out = tmp_path / "batches.txt"
    job = write(
        tmp_path / "signalled.py",
        f"""
        import os, signal
        from service.streaming import StreamingContext

        if __name__ == "__main__":
            ssc = StreamingContext(0.05)
            stream = ssc.queueStream([[1], [2], [3]], oneAtATime=True, default=[0])

            def output(rdd):
                values = rdd.collect()
                with open({str(out)!r}, "a") as f:
                    f.write(f"{{values}}\\n")
                if values == [3]:
                    os.kill(os.getpid(), signal.SIGTERM)

            stream.foreachRDD(output)
            ssc.start()
            ssc.awaitTermination()
            with open({str(out)!r}, "a") as f:
                f.write("returned\\n")
        """,
    )
    assert run_job(str(job), [], conf()) == 0
    lines = out.read_text().splitlines()
    assert lines[:3] == ["[1]", "[2]", "[3]"]
    assert lines[-1] == "returned"
