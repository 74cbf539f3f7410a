"""``python -m service run JOB``: load a PySpark-style streaming job and run it as a service.

The job contract is in docs/jobs.md. The runner adds what ``spark-submit`` and a cluster manager
would: settings from the environment (``settings()``), logging, and a graceful stop on
SIGTERM/SIGINT (the batch in flight finishes and is committed, then the process exits 0).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import os
import runpy
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import structlog

from service.config import Settings, load_settings, running_with, settings
from service.observability.job import serve_observability

log = structlog.get_logger(__name__)

JobKind = Literal["script", "main", "setup"]
SETUP_NAMES = ("setup", "build")

__all__ = ["Job", "JobError", "main", "resolve_job", "run_job", "settings"]


class JobError(ValueError):
    """The job cannot be found or does not follow the contract in docs/jobs.md."""


@dataclass(frozen=True)
class Job:
    """A resolved job: what to run and how; a job file is not executed until it runs."""

    kind: JobKind
    name: str
    path: Path | None = None  # a job file
    module: str | None = None  # an importable module
    function: str | None = None  # for "main" and "setup" jobs

    def load(self) -> Callable[..., Any]:
        """The job's function; a job file is executed as a module that is not ``__main__``."""
        assert self.function is not None
        if self.path is not None:
            namespace = runpy.run_path(str(self.path), run_name=f"dstreams_job_{self.name}")
            function = namespace.get(self.function)
        else:
            assert self.module is not None
            function = getattr(importlib.import_module(self.module), self.function, None)
        if not callable(function):
            raise JobError(f"job {self.name} has no function {self.function!r}")
        return function  # type: ignore[no-any-return]


def _top_level(tree: ast.Module) -> tuple[set[str], bool]:
    """Names of top-level functions and whether an ``if __name__ == "__main__"`` block exists."""
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    guarded = any(
        isinstance(n, ast.If)
        and isinstance(n.test, ast.Compare)
        and isinstance(n.test.left, ast.Name)
        and n.test.left.id == "__name__"
        for n in tree.body
    )
    return functions, guarded


def _resolve_file(spec: str) -> Job:
    path = Path(spec)
    if not path.is_file():
        raise JobError(f"job file not found: {spec}")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise JobError(f"job file {spec} does not parse: {exc}") from None
    functions, guarded = _top_level(tree)
    setup = next((n for n in SETUP_NAMES if n in functions), None)
    if setup is not None:
        return Job("setup", path.stem, path=path, function=setup)
    if "main" in functions and not guarded:
        return Job("main", path.stem, path=path, function="main")
    return Job("script", path.stem, path=path)


def resolve_job(spec: str) -> Job:
    """``path/to/job.py``, ``package.module:function`` or ``package.module`` (see docs/jobs.md)."""
    if spec.endswith(".py") or os.sep in spec:
        return _resolve_file(spec)
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise JobError(f"cannot import job module {module_name!r}: {exc}") from None
    name = module_name.rsplit(".", 1)[-1]
    if not function_name:
        found = [n for n in (*SETUP_NAMES, "main") if callable(getattr(module, n, None))]
        if not found:
            raise JobError(f"module {module_name} defines none of setup(ssc), build(ssc), main()")
        function_name = found[0]
    function = getattr(module, function_name, None)
    if not callable(function):
        raise JobError(f"{module_name} has no function {function_name!r}")
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        raise JobError(f"cannot tell what {spec} takes: give a Python function") from None
    required = [
        p
        for p in parameters
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(required) > 1:
        raise JobError(f"{spec} should take no argument (main) or one (the StreamingContext)")
    kind: JobKind = "setup" if required else "main"
    return Job(kind, name, module=module_name, function=function_name)


def job_settings(base: Settings, job: Job) -> Settings:
    """Fill in what the job's name decides: its name and its consumer group."""
    name = base.job_name or job.name
    return base.model_copy(update={"job_name": name, "group_id": base.consumer_group(name)})


def configure_logging(level: str) -> None:
    """One log format for the engine's stdlib logging and the sources' structlog, on stderr."""
    numeric = logging.getLevelName(level)
    logging.basicConfig(
        level=numeric, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def active_contexts() -> list[Any]:
    """The started (or starting) and not yet stopped StreamingContext of this process, if any."""
    from service.streaming.context import StreamingContext

    active = StreamingContext.current()
    return [] if active is None else [active]


# Exit status when the graceful stop overran its grace period (EX_SOFTWARE).
OVERRAN_EXIT_CODE = 70


class GracefulStop:
    """SIGTERM/SIGINT: stop active contexts gracefully on a helper thread; a second one exits.

    The stop runs off the signal handler because it waits for the batch in flight, and the main
    thread is the one that must return from ``awaitTermination`` meanwhile. A stop that takes
    longer than ``grace_seconds`` (a job function that never returns) ends the process with
    ``OVERRAN_EXIT_CODE``: the batch in flight is then not committed, and read again at restart.
    """

    def __init__(
        self, grace_seconds: float = 25.0, exit: Callable[[int], object] = os._exit
    ) -> None:
        self.requested = threading.Event()
        self._job_ended = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.watcher: threading.Thread | None = None
        self._grace_seconds = grace_seconds
        self._exit = exit

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            log.warning("forced_exit", signal=signal.Signals(signum).name)
            self._exit(128 + signum)
            return
        self.requested.set()
        log.info(
            "stopping_gracefully",
            signal=signal.Signals(signum).name,
            grace_seconds=self._grace_seconds,
        )
        self._thread = threading.Thread(target=self._stop_all, name="dstreams-stop", daemon=True)
        self._thread.start()
        self.watcher = threading.Thread(target=self._watch, name="dstreams-stop-watch", daemon=True)
        self.watcher.start()

    def _watch(self) -> None:
        if not self._stopped.wait(self._grace_seconds):
            log.error("graceful_stop_overran", grace_seconds=self._grace_seconds)
            self._exit(OVERRAN_EXIT_CODE)

    def _stop_all(self) -> None:
        try:
            self._stop_contexts()
        finally:
            self._stopped.set()

    def _stop_contexts(self) -> None:
        # A signal during the job's setup comes before its context starts: wait for it.
        while not self._job_ended.is_set():
            contexts = active_contexts()
            for ssc in contexts:
                ssc.stop(stopSparkContext=True, stopGraceFully=True)
            if contexts:
                return
            self._job_ended.wait(0.1)

    def job_ended(self) -> None:
        """The job returned: wait for a stop in progress to finish."""
        self._job_ended.set()
        if self._thread is not None:
            self._thread.join()


@contextmanager
def _signals(stopper: GracefulStop) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, stopper.handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def _job_environment(job: Job, conf: Settings, argv: Sequence[str]) -> Iterator[None]:
    saved_argv = sys.argv
    sys.argv = [str(job.path) if job.path is not None else job.name, *argv]
    try:
        with running_with(conf):
            yield
    finally:
        sys.argv = saved_argv


def _run_setup(function: Callable[..., Any], conf: Settings) -> None:
    """A ``setup(ssc)`` job is built as getOrCreate builds one: it resumes what it left."""
    from service.streaming.context import StreamingContext

    job_name = conf.job_name
    assert job_name is not None

    def create() -> StreamingContext:
        ssc = StreamingContext(conf.batch_interval_seconds, jobName=job_name)
        ssc.checkpoint(conf.redis_url)
        returned = function(ssc)
        return returned if isinstance(returned, StreamingContext) else ssc

    ssc = StreamingContext.getOrCreate(conf.redis_url, create)
    ssc.start()
    ssc.awaitTermination()


def run_job(spec: str, argv: Sequence[str] = (), base: Settings | None = None) -> int:
    """Run a job until it ends or a signal stops it; 0 on a clean end or a graceful stop."""
    conf = base if base is not None else load_settings()
    job = resolve_job(spec)
    conf = job_settings(conf, job)
    log.info("job_starting", job=spec, kind=job.kind, job_name=conf.job_name)
    stopper = GracefulStop(conf.shutdown_grace_seconds)
    code = 0
    with _signals(stopper), _job_environment(job, conf, argv), serve_observability(conf):
        try:
            if job.kind == "script":
                assert job.path is not None
                runpy.run_path(str(job.path), run_name="__main__")
            elif job.kind == "main":
                job.load()()
            else:
                _run_setup(job.load(), conf)
        except SystemExit as exc:
            # the job's own sys.exit(), e.g. after printing its usage
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            stopper.job_ended()
    log.info("job_stopped", job=spec, by_signal=stopper.requested.is_set(), code=code)
    return code


def main(spec: str, argv: Sequence[str]) -> int:
    """The ``run`` subcommand: bad settings or a bad job end the process with one line."""
    try:
        conf = load_settings()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(conf.log_level)
    try:
        return run_job(spec, argv, conf)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
