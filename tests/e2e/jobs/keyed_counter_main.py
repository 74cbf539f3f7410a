"""The keyed counter (keyed_counter.py) as a ``main()`` job that builds its context directly,
as PySpark code without getOrCreate does: a Kafka job resumes all the same (docs/semantics.md)."""

from tests.e2e.jobs.keyed_counter import build_counter, new_context, topics_from_argv


def main() -> None:
    ssc = new_context()
    build_counter(ssc, *topics_from_argv())
    ssc.start()
    ssc.awaitTermination()
