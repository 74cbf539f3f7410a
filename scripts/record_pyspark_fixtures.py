"""Record real PySpark outputs for the conformance cases into tests/conformance/fixtures.

Run with the PySpark venv (see docs/conformance.md):

    .venv-pyspark/bin/python scripts/record_pyspark_fixtures.py [CASE ...]

One SparkContext (one JVM) for all cases and a fresh StreamingContext per case, so a full run
takes minutes. Outputs are keyed by batch index, not by wall-clock time, and every case waits
until its last batch has run, so a slow machine only makes the run longer, never different.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conformance import Case, fixture_document, wire  # noqa: E402
from tests.conformance.cases import BATCH_DURATION, CASES, CASES_BY_NAME  # noqa: E402

FIXTURE_DIR = ROOT / "tests" / "conformance" / "fixtures"
PARALLELISM = 2


def spark_context() -> Any:
    import pyspark
    from pyspark import SparkConf, SparkContext, cloudpickle

    import tests.conformance
    import tests.conformance.cases

    # Ship case code by value: Python workers cannot import the repository's test packages.
    cloudpickle.register_pickle_by_value(tests.conformance)
    cloudpickle.register_pickle_by_value(tests.conformance.cases)
    conf = (
        SparkConf()
        .setMaster(f"local[{PARALLELISM}]")
        .setAppName("record-pyspark-fixtures")
        .set("spark.default.parallelism", str(PARALLELISM))
        .set("spark.ui.enabled", "false")
        .set("spark.ui.showConsoleProgress", "false")
    )
    sc = SparkContext(conf=conf)
    sc.setLogLevel("ERROR")
    print(f"pyspark {pyspark.__version__}, local[{PARALLELISM}]", file=sys.stderr)
    return sc


def record(sc: Any, case: Case, batch_duration: float, checkpoint_root: Path) -> list[Any]:
    from pyspark.streaming import StreamingContext

    ssc = StreamingContext(sc, batch_duration)
    ssc.checkpoint(str(checkpoint_root / case.name))
    collector = wire(case, ssc)
    # A liveness guard only: the recording is complete when the last batch ran, however long.
    deadline = time.monotonic() + 120 + 10 * case.num_batches * batch_duration
    ssc.start()
    try:
        while collector.ticks < case.num_batches:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{case.name}: {collector.ticks}/{case.num_batches} batches")
            if case.error is not None:
                time.sleep(0.05)  # the expected error must not end the wait
            elif ssc.awaitTerminationOrTimeout(0.05):
                raise RuntimeError(f"{case.name}: streaming context stopped early")
    finally:
        ssc.stop(stopSparkContext=False, stopGraceFully=False)
    if case.error is not None:
        check_error(ssc, case.error)
    return collector.batches(case.num_batches)


def check_error(ssc: Any, expected: str) -> None:
    """PySpark keeps a job's error after stop; make sure it is the one the case provokes."""
    try:
        ssc.awaitTerminationOrTimeout(0.001)
    except Exception as exc:  # Py4JJavaError carrying the Python traceback
        if expected not in str(exc):
            raise RuntimeError(f"unexpected error, wanted {expected!r}") from exc
        return
    raise RuntimeError(f"no error raised, wanted {expected!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--out", type=Path, default=FIXTURE_DIR, help="fixture directory")
    parser.add_argument("--batch-duration", type=float, default=BATCH_DURATION)
    parser.add_argument("--list", action="store_true", help="list case names and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(c.name for c in CASES))
        return 0
    unknown = [n for n in args.cases if n not in CASES_BY_NAME]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    selected = [CASES_BY_NAME[n] for n in args.cases] if args.cases else CASES

    warnings.filterwarnings("ignore", category=FutureWarning)
    import pyspark

    args.out.mkdir(parents=True, exist_ok=True)
    sc = spark_context()
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="pyspark-ckpt-") as checkpoints:
            for case in selected:
                t0 = time.monotonic()
                batches = record(sc, case, args.batch_duration, Path(checkpoints))
                doc = fixture_document(
                    case,
                    batches,
                    pyspark_version=pyspark.__version__,
                    batch_duration=args.batch_duration,
                    default_parallelism=PARALLELISM,
                )
                path = args.out / f"{case.name}.json"
                path.write_text(json.dumps(doc, indent=1) + "\n")
                print(f"{case.name}: {time.monotonic() - t0:.1f}s", file=sys.stderr)
    finally:
        sc.stop()
    print(f"{len(selected)} case(s) in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
