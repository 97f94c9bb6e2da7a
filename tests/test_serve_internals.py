"""The wrappers around Ray Serve's private replica module hold only for the Ray they were written for."""

import asyncio
import inspect
from pathlib import Path

import ray
import ray._raylet
from ray._private import auto_init_hook
from ray.serve._private import replica

from serving.serve_internals import (
    AUTO_CONNECT_VARIABLE,
    TASK_EVENTS_FLUSH_VARIABLE,
    WRITTEN_FOR,
    bind_replica_grpc_to_loopback,
    quick_exit_environment,
    rebind_replica_port_at_once,
)


def test_ray_is_the_version_the_wrappers_were_written_for():
    assert ray.__version__ == WRITTEN_FOR, (
        f"Ray {ray.__version__} is installed; serving/serve_internals.py wraps private functions of Ray "
        f"{WRITTEN_FOR}: check them against this version, then update WRITTEN_FOR"
    )


def test_the_wrapped_functions_take_what_the_wrappers_pass():
    assert list(inspect.signature(replica.add_port_to_grpc_server).parameters)[:2] == ["server", "address"]
    assert "enable_so_reuseport" in inspect.signature(replica.start_asgi_http_server).parameters


def test_the_wrappers_are_installed_once_and_rewrite_the_address(monkeypatch):
    bound = []
    monkeypatch.setattr(replica, "add_port_to_grpc_server", lambda server, address: bound.append(address))
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    bind_replica_grpc_to_loopback()
    bind_replica_grpc_to_loopback()  # a second replica in the same process wraps nothing more
    replica.add_port_to_grpc_server(None, "[::]:0")
    assert bound == ["127.0.0.1:0"]


def test_outside_loopback_only_mode_serve_keeps_its_default(monkeypatch):
    original = replica.add_port_to_grpc_server
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")
    bind_replica_grpc_to_loopback()
    assert replica.add_port_to_grpc_server is original


def test_the_replica_port_is_bound_with_address_reuse(monkeypatch):
    calls = []

    async def start(*args, **kwargs):
        calls.append(kwargs)

    monkeypatch.setattr(replica, "start_asgi_http_server", start)
    rebind_replica_port_at_once()
    rebind_replica_port_at_once()
    asyncio.run(replica.start_asgi_http_server("app", port=8000))
    assert calls == [{"port": 8000, "enable_so_reuseport": True}]


def test_the_internal_settings_for_a_quick_exit_are_ones_ray_reads():
    name = TASK_EVENTS_FLUSH_VARIABLE.removeprefix("RAY_")
    assert name.encode() in Path(ray._raylet.__file__).read_bytes()  # Ray's core reads RAY_<setting> at start
    assert f'"{AUTO_CONNECT_VARIABLE}"' in inspect.getsource(auto_init_hook)
    assert set(quick_exit_environment()) == {TASK_EVENTS_FLUSH_VARIABLE, AUTO_CONNECT_VARIABLE}
