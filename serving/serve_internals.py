"""The one place rebq-serve reaches into Ray's private parts, and why.

Serve 2.60 has no public option for either of two things a replica with direct ingress needs:
- its inter-deployment gRPC server binds `[::]:0`, every interface, even when Ray itself is kept on
  127.0.0.1 (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, see `serving/launcher.py`): a loopback-only
  server must not listen outward;
- its own HTTP server binds without SO_REUSEADDR, so a replica replacing a dead one cannot take the
  same port back until the dead one's connections leave TIME_WAIT, a minute later.

Each is a wrapper around one function of `ray.serve._private.replica`, installed once per process by the
replica's constructor. And Ray 2.60 has no public option for a third thing `rebq-serve serve` needs, a stop
within seconds (see `quick_exit_environment`). They were written against `WRITTEN_FOR` and
`tests/test_serve_internals.py` fails on any other Ray, so that an upgrade has to look at them again.
"""

from __future__ import annotations

import os

from serving.launcher import LOOPBACK_ONLY_VARIABLE

WRITTEN_FOR = "2.60.0"  # the Ray version whose private parts these were written against
TASK_EVENTS_FLUSH_VARIABLE = "RAY_task_events_shutdown_flush_timeout_ms"  # one of Ray's internal settings
AUTO_CONNECT_VARIABLE = "RAY_ENABLE_AUTO_CONNECT"  # read once, when `ray` is imported


def quick_exit_environment() -> dict[str, str]:
    """Two of Ray's internal settings that keep a stop of `rebq-serve serve` short and quiet; set before Ray is
    imported and started (every process of the node reads them from the environment).

    - On `ray.shutdown()` a driver's core worker sends the GCS the task events it still holds, and waits up to
      5 s for an answer. When a signal to the whole process group (a service manager's SIGTERM) has already
      stopped the GCS, that answer never comes. Half a second is ample for a GCS that is alive.
    - A Ray call made once Ray is shut down starts a new local Ray (and prints so), unless automatic
      connection is off. A stop that gives up waiting on a step (see `serving.launcher.shutdown`) leaves it
      behind on a thread of its own, whose next call must fail instead.
    """
    return {TASK_EVENTS_FLUSH_VARIABLE: "500", AUTO_CONNECT_VARIABLE: "0"}


def bind_replica_grpc_to_loopback() -> None:
    """On a loopback-only node, keep Serve's inter-deployment gRPC server off the outward interfaces.

    Serve 2.60 binds it to `[::]:0` with no option to change that; it starts right after the replica's
    constructor, so this wraps the function it calls to bind there. Only when Ray itself is kept on
    loopback (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`); a real cluster keeps Serve's default.
    """
    if os.environ.get(LOOPBACK_ONLY_VARIABLE) != "0":
        return
    from ray.serve._private import replica

    bind = replica.add_port_to_grpc_server
    if getattr(bind, "loopback_only", False):
        return

    def bind_on_loopback(server, address: str):
        return bind(server, address.replace("[::]:", "127.0.0.1:"))

    bind_on_loopback.loopback_only = True
    replica.add_port_to_grpc_server = bind_on_loopback


def rebind_replica_port_at_once() -> None:
    """Let a replica's own HTTP server (direct ingress) bind its port while closed connections linger.

    Serve 2.60 binds it without SO_REUSEADDR, so a replica that replaces a dead one could not take the
    same port back until the dead one's connections left TIME_WAIT, a minute later. Serve's own option
    for the server sets SO_REUSEADDR and SO_REUSEPORT; the port allocator still gives each live replica
    its own port.
    """
    from ray.serve._private import replica

    start = replica.start_asgi_http_server
    if getattr(start, "rebinds_at_once", False):
        return

    async def start_reusing_address(*args, **kwargs):
        return await start(*args, **{**kwargs, "enable_so_reuseport": True})

    start_reusing_address.rebinds_at_once = True
    replica.start_asgi_http_server = start_reusing_address
