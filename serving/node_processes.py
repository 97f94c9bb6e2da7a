"""The processes `rebq-serve serve` starts: its Ray node's, marked so that none outlives a stop, and a canary
that tells a signal to the whole process group from one to the command alone.

Every process of the node (GCS, raylet, agents, workers) inherits the driver's environment, and with it a
variable naming the node. After `ray.shutdown()` a process still carrying it is one Ray did not end: a worker
that was still starting when a signal to the whole process group stopped its raylet, say, which no raylet is
left to end (seen here: one lingered 20 s). It is given a moment, then killed. The variable is read from
/proc (Linux); where there is none, nothing is found.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

NODE_VARIABLE = "REBQ_SERVE_NODE"


def mark_node() -> str:
    """Name the node that is about to start: every process started from now on inherits the name."""
    os.environ[NODE_VARIABLE] = uuid.uuid4().hex
    return os.environ[NODE_VARIABLE]


def node_processes(mark: str) -> list[int]:
    """Our processes, other than this one, started with `NODE_VARIABLE` set to `mark` (zombies have no
    environment left, so they are not among them)."""
    needle = f"{NODE_VARIABLE}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def end_node_processes(mark: str, grace_s: float = 1.0, timeout_s: float = 5.0) -> int:
    """Wait up to `grace_s` for the node's processes to end, kill those left, and wait (up to `timeout_s`) until
    they are gone; how many were killed."""
    deadline = time.monotonic() + grace_s
    while (left := node_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while node_processes(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        log.debug("killed %d processes of the node that outlived its shutdown", len(left))
    return len(left)


CANARY = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group, but Ray's processes block it
while os.getppid() == int(sys.argv[1]):  # ends soon after the command, however the command ended
    time.sleep(0.5)
"""


class GroupCanary:
    """A child in the command's process group that SIGTERM ends at once (no handler) and SIGINT leaves alone.

    When the command is told to stop, the canary's death says that the SIGTERM went to the whole group (a
    service manager's stop, `kill -TERM -PGID`), and so reached Ray's processes too: they are ending on their
    own, and anything asked of them now fails, and Ray prints it."""

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, "-c", CANARY, str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def died_within(self, seconds: float) -> bool:
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
