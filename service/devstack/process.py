"""Shared plumbing for the local services: free ports, pid files, clean stops, clear errors.

Every service started here runs in its own session (process group) so that stopping it also
stops anything it spawned, and a failed start never leaves a process behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class DevstackError(RuntimeError):
    """A local service could not be provisioned; the message names what failed and its log."""


def project_root() -> Path:
    """The checkout this package lives in (where `.devstack/` is kept, git-ignored)."""
    return Path(__file__).resolve().parents[2]


def default_home() -> Path:
    """Where jars, data and logs of the local services live; `DSTREAMS_DEVSTACK_HOME` overrides."""
    override = os.environ.get("DSTREAMS_DEVSTACK_HOME")
    return Path(override) if override else project_root() / ".devstack"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_port_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise DevstackError(f"{what}: port 127.0.0.1:{port} is already in use") from exc


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) still answers kill(0). It is not reaped here: its
    # Popen does that, and reaping behind its back would leave the Popen believing it runs.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def spawn(
    argv: list[str], *, log_file: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a daemon-like child in its own session, output appended to its log file.

    The caller keeps the Popen so that it can reap the child; a child left running when the
    caller exits (``devstack up``) is adopted by init and later stopped by pid.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    return proc


def stop_pid(
    pid: int,
    *,
    grace_seconds: float,
    sig: int = signal.SIGTERM,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Signal the process group, wait for it to go, and SIGKILL it if the grace period ends."""
    try:
        _signal_and_wait(pid, grace_seconds, sig)
    finally:
        if process is not None and process.pid == pid:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)


def _signal_and_wait(pid: int, grace_seconds: float, sig: int) -> None:
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_until_ready(
    probe: Callable[[], bool],
    *,
    pid: int,
    timeout_seconds: float,
    what: str,
    log_file: Path,
) -> None:
    """Poll `probe` until it answers True; fail fast if the process died, or at the timeout."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise DevstackError(f"{what} exited during start-up; see its log: {log_file}")
        if probe():
            return
        time.sleep(0.2)
    raise DevstackError(
        f"{what} did not come up within {timeout_seconds:.0f}s; see its log: {log_file}"
    )


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


class Daemon:
    """One background service process, tracked by a pid file so another command can stop it.

    A start that does not become ready is undone (process group killed, pid file removed), so
    a failed start never leaves a process behind.
    """

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        pid = read_pid(self.pid_file)
        return pid if pid is not None and pid_alive(pid) else None

    def launch(
        self,
        argv: list[str],
        *,
        what: str,
        ready: Callable[[], bool],
        timeout_seconds: float,
        output_file: Path,
        log_file: Path,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start ``argv`` and return once ``ready()``; ``log_file`` is the one errors point to."""
        if self.pid is not None:
            raise DevstackError(f"{what} already running (pid file {self.pid_file})")
        self._process = spawn(argv, log_file=output_file, cwd=cwd, env=env)
        pid = self._process.pid
        self.pid_file.write_text(str(pid))
        try:
            wait_until_ready(
                ready, pid=pid, timeout_seconds=timeout_seconds, what=what, log_file=log_file
            )
        except DevstackError:
            self.stop(grace_seconds=5)
            raise

    def stop(self, grace_seconds: float, sig: int = signal.SIGTERM) -> None:
        pid = self.pid
        if pid is not None:
            stop_pid(pid, grace_seconds=grace_seconds, sig=sig, process=self._process)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        self.stop(grace_seconds=0, sig=signal.SIGKILL)


class DaemonBacked:
    """The pid bookkeeping every local service exposes, delegated to its ``_daemon``."""

    _daemon: Daemon

    @property
    def pid_file(self) -> Path:
        return self._daemon.pid_file

    @property
    def pid(self) -> int | None:
        return self._daemon.pid

    def is_running(self) -> bool:
        return self.pid is not None
