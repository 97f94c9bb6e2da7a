"""This machine's processes of a Ray node or of a server's session, found through /proc (Linux), their resident
memory, and a stop of them all at once."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

RAY_PROCESS_WORDS = ("ray::", "/ray/", "raylet", "gcs_server", "rebq-serve serve")


def processes_matching(words: tuple[str, ...]) -> list[int]:
    """Our own processes whose command line contains any of `words`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if any(word in command for word in words):
            found.append(int(entry.name))
    return found


def resident_mb(pids: list[int]) -> float:
    """Summed VmRSS of `pids`, in MiB (processes that ended meanwhile count 0)."""
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total_kb / 1024


def ray_resident_mb() -> float | None:
    """Resident memory of every Ray process of ours on this machine; None where /proc is absent."""
    if not Path("/proc").is_dir():
        return None
    return resident_mb(processes_matching(RAY_PROCESS_WORDS))


@dataclass(frozen=True)
class Process:
    pid: int
    started: int  # clock ticks after boot: tells the process apart from a later one given the same pid


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, session, start time) from /proc/PID/stat; None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return fields[0], int(fields[3]), int(fields[19])


def session_processes(session: int) -> list[Process]:
    """Our running processes in `session` (a server started with `start_new_session=True` leads its own, and the
    Ray it starts stays in it: raylet, GCS, workers, agents)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[1] == session and stat[0] != "Z":
            found.append(Process(int(entry.name), stat[2]))
    return found


def still_running(processes: list[Process]) -> list[Process]:
    """Those of `processes` that run yet (a zombie has ended: it only waits to be reaped)."""
    return [p for p in processes if (stat := _stat(p.pid)) and stat[2] == p.started and stat[0] != "Z"]


def kill_session(session: int, timeout_s: float = 30) -> int:
    """SIGKILL every process of `session` at once, as a power cut would, again for any started meanwhile, until
    none is left; how many were killed. Each is first stopped (SIGSTOP), so that none sees another die."""
    killed: set[Process] = set()
    deadline = time.monotonic() + timeout_s
    while (running := session_processes(session)) and time.monotonic() < deadline:
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for process in running:
                try:
                    os.kill(process.pid, sig)
                except ProcessLookupError:
                    pass
        killed.update(running)
        time.sleep(0.05)
    if running:
        raise TimeoutError(f"session {session}: {len(running)} processes still running after {timeout_s:.0f} s")
    return len(killed)
