"""A process started after the node was marked carries the mark; one left after a stop is found and killed. The
canary dies of SIGTERM, lives through SIGINT, and does not outlive the command."""

import os
import signal
import subprocess
import sys
import time

from serving.node_processes import NODE_VARIABLE, GroupCanary, end_node_processes, mark_node, node_processes

STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"


def test_a_process_of_the_node_that_outlives_a_stop_is_killed(monkeypatch):
    monkeypatch.delenv(NODE_VARIABLE, raising=False)  # and so put back as it was after the test
    mark = mark_node()
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, NODE_VARIABLE: "x"}
    )
    worker = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE)
    try:
        worker.stdout.readline()  # it ignores SIGTERM from now on
        assert node_processes(mark) == [worker.pid]  # neither this process nor another node's
        start = time.monotonic()
        assert end_node_processes(mark, grace_s=0.2) == 1
        assert worker.wait(timeout=5) == -9 and time.monotonic() - start < 5
        assert node_processes(mark) == [] and other.poll() is None
    finally:
        for process in (worker, other):
            process.kill()
            process.wait()


def test_with_every_process_of_the_node_gone_nothing_is_killed(monkeypatch):
    monkeypatch.delenv(NODE_VARIABLE, raising=False)
    mark = mark_node()
    start = time.monotonic()
    assert end_node_processes(mark) == 0 and time.monotonic() - start < 0.5


def ignores_sigint(pid: int) -> bool:
    status = open(f"/proc/{pid}/status").read()
    return bool(int(status.split("SigIgn:")[1].split()[0], 16) & (1 << (signal.SIGINT - 1)))


def running(pid: int) -> bool:
    """Whether `pid` runs yet (a zombie left to a parent that reaps nothing has ended)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_the_canary_dies_of_sigterm_and_lives_through_sigint():
    canary = GroupCanary()
    try:
        deadline = time.monotonic() + 30
        while not ignores_sigint(canary.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        canary.process.send_signal(signal.SIGINT)
        assert not canary.died_within(0.3)
        canary.process.send_signal(signal.SIGTERM)
        assert canary.died_within(5) and canary.process.returncode == -signal.SIGTERM
    finally:
        canary.close()


def test_the_canary_ends_soon_after_the_command():
    command = "from serving.node_processes import GroupCanary; print(GroupCanary().process.pid, flush=True)"
    parent = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, timeout=60)
    canary = int(parent.stdout)
    deadline = time.monotonic() + 10
    while running(canary) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(canary)
