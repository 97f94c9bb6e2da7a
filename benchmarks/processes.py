"""This machine's processes of a Ray node, found through /proc (Linux), and their resident memory."""

from __future__ import annotations

import os
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
