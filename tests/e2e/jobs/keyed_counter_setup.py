"""The keyed counter (keyed_counter.py) as a ``setup(ssc)`` job: the runner builds the context."""

from service.streaming import StreamingContext
from tests.e2e.jobs.keyed_counter import build_counter, topics_from_argv


def setup(ssc: StreamingContext) -> None:
    build_counter(ssc, *topics_from_argv())
