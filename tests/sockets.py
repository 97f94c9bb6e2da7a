"""Which TCP addresses a set of processes listens on or talks to, read from /proc (Linux)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

LISTEN, ESTABLISHED = "0A", "01"


def _address(hex_address: str) -> str:
    host, _port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)


def _tcp_rows() -> list[list[str]]:
    """The fields of every row of /proc/net/tcp and tcp6: local address 1, remote 2, state 3, inode 9."""
    rows = []
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if path.exists():
            rows += [line.split() for line in path.read_text().splitlines()[1:]]
    return rows


def socket_table() -> dict[str, tuple[str, str, str]]:
    """inode -> (state, local address, remote address) for every TCP socket of this network namespace."""
    return {parts[9]: (parts[3], _address(parts[1]), _address(parts[2])) for parts in _tcp_rows()}


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        pass
    return inodes


def off_loopback(endpoints: list[tuple[int, str, str, str]]) -> list[tuple[int, str, str, str]]:
    """The endpoints bound or connected beyond 127.0.0.1 (a listener's remote side is all zeros)."""
    return [e for e in endpoints if not (e[2] == "127.0.0.1" and e[3] in ("127.0.0.1", "0.0.0.0", "::"))]


def tcp_endpoints(pids: list[int]) -> list[tuple[int, str, str, str]]:
    """(pid, state, local, remote) of every listening or connected TCP socket of `pids`."""
    table = socket_table()
    endpoints = []
    for pid in pids:
        for inode in socket_inodes(pid):
            if inode in table and table[inode][0] in (LISTEN, ESTABLISHED):
                endpoints.append((pid, *table[inode]))
    return endpoints


def listening_ports(pid: int) -> set[int]:
    """The TCP ports `pid` listens on."""
    inodes = socket_inodes(pid)
    return {int(parts[1].split(":")[1], 16) for parts in _tcp_rows() if parts[3] == LISTEN and parts[9] in inodes}
