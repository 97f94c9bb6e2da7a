"""`rebq-serve serve`: a local Ray on loopback, the application deployed, and a clean stop on a signal.

Ray binds to the machine's outward address unless told otherwise; `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`
set before it starts, with the node and dashboard addresses at 127.0.0.1, keeps every listener local.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from serving.config import AppConfig, RayConfig, ServerConfig

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
LOOPBACK_ONLY_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
GROUP_SIGNAL_S = 0.5  # a signal to the whole group ends the canary (`serving.node_processes`) within this
ADDRESS_FILE = "rebq-gcs-address"  # in the Ray temp dir: where another driver finds the local Ray


@dataclass(frozen=True)
class Addresses:
    api: str  # the one replica's own address (ingress direct, one replica), else Serve's proxy
    docs: str
    metrics: str
    proxy: str  # Serve's proxy, which spreads requests over every replica
    replicas: tuple[str, ...]  # each replica's own address (ingress direct); empty otherwise


def addresses(config: AppConfig) -> Addresses:
    server = config.server
    proxy = f"http://{server.host}:{server.serve_proxy_port}"
    replicas = tuple(f"http://{server.host}:{port}" for port in server.replica_ports)
    api = replicas[0] if len(replicas) == 1 else proxy
    return Addresses(
        api=api,
        docs=f"{api}/docs",
        metrics=f"http://{LOOPBACK}:{config.ray.metrics_port}/metrics",
        proxy=proxy,
        replicas=replicas,
    )


def ingress_environment(server: ServerConfig) -> dict[str, str]:
    """Serve's variables for `server.ingress`, read by its processes when they start.

    Either way a replica runs its request handling on its main event loop, not on a second loop in
    another thread: one thread hop fewer per request (a few ms on 2 cores, measured).
    Direct ingress: each replica runs its own HTTP server, so a request skips the hop through Serve's
    proxy (on 2 cores that hop cost a third of the throughput). Replicas take ports from `port` up, one
    each; a replica that replaces a dead one takes its port back at once (no quarantine), and a stopping
    replica is not kept draining for an outside load balancer, as there is none.
    """
    one_loop = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}
    if server.ingress == "proxy":
        return {**one_loop, "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}
    return {
        **one_loop,
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(server.port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(server.port + server.replicas),  # exclusive
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
    }


def keep_ray_on_loopback() -> None:
    """Must run before `ray` is first imported: Ray reads this variable once, at import."""
    if "ray" in sys.modules and os.environ.get(LOOPBACK_ONLY_VARIABLE) != "0":
        log.warning("ray was imported before %s=0 was set; it may listen beyond loopback", LOOPBACK_ONLY_VARIABLE)
    os.environ[LOOPBACK_ONLY_VARIABLE] = "0"


def start_local_ray(config: RayConfig, server: ServerConfig) -> None:
    """A one-node Ray whose every listener is on 127.0.0.1, its Serve set up for `server.ingress`."""
    from serving.serve_internals import quick_exit_environment

    keep_ray_on_loopback()
    os.environ.update(ingress_environment(server))  # inherited by every Ray process started below
    os.environ.update(quick_exit_environment())
    import ray

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    config.temp_dir.mkdir(parents=True, exist_ok=True)
    ray.init(
        _node_ip_address=LOOPBACK,
        dashboard_host=LOOPBACK,
        include_dashboard=False,
        num_cpus=config.num_cpus or os.cpu_count(),
        object_store_memory=config.object_store_memory,
        _temp_dir=str(config.temp_dir),
        _metrics_export_port=config.metrics_port,
        log_to_driver=config.log_to_driver,
        configure_logging=False,
    )
    (config.temp_dir / ADDRESS_FILE).write_text(ray.get_runtime_context().gcs_address)


def attach_local_ray(config: RayConfig) -> bool:
    """Join the Ray that `start_local_ray` started with `config`, as one more driver (to kill actors, say).

    False when this process is already connected to a Ray (then it is left as it is). Ray's token
    authentication is on by default, and a joining driver sends the token (`~/.ray/auth_token`) only if
    `RAY_AUTH_MODE=token` was set before Ray was imported: the command line sets it.
    """
    keep_ray_on_loopback()
    import ray

    if ray.is_initialized():
        return False
    try:
        address = (config.temp_dir / ADDRESS_FILE).read_text().strip()
    except FileNotFoundError as error:
        detail = f"no Ray of rebq-serve under {config.temp_dir}: is `rebq-serve serve` running?"
        raise ConnectionError(detail) from error
    ray.init(address=address, _node_ip_address=LOOPBACK, log_to_driver=False, configure_logging=False)
    return True


def deploy(config: AppConfig) -> None:
    """Start Serve's HTTP proxy on the configured address and deploy the application."""
    from ray import serve

    from serving.deployment import APP_NAME, build_app

    serve.start(http_options={"host": config.server.host, "port": config.server.serve_proxy_port})
    serve.run(build_app(config), name=APP_NAME, route_prefix="/", blocking=False)


def wait_until_healthy(url: str, timeout_s: float, stop: threading.Event | None = None) -> None:
    """Poll `url`/healthz until it answers 200 (or `stop` is set)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    if stop and stop.is_set():
        return
    raise TimeoutError(f"{url}/healthz did not answer 200 within {timeout_s:.0f} s")


def node_answers(gcs_address: str, timeout_s: float = 0.2) -> bool:
    """Whether the Ray node's GCS at `gcs_address` (host:port) still takes connections."""
    host, _, port = gcs_address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


class Step:
    """`call` run on a thread of its own, so that a stop need not wait for it: a step given up on is left
    behind (a daemon thread), and its outcome with it."""

    def __init__(self, call: Callable[[], object]):
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._call = call
        threading.Thread(target=self._run, name="rebq-step", daemon=True).start()

    def _run(self) -> None:
        try:
            self._call()
        except BaseException as error:  # handed to whoever waits, if anyone still does
            self.error = error
        finally:
            self._done.set()

    def wait(self, timeout_s: float, worth_waiting: Callable[[], bool]) -> bool:
        """True once the call returned or raised; False when `timeout_s` passed or `worth_waiting()` said no."""
        deadline = time.monotonic() + timeout_s
        while not self._done.wait(0.05):
            if time.monotonic() > deadline or not worth_waiting():
                return False
        return True


def shutdown(node: str | None = None, group_signalled: bool = False) -> None:
    """Stop the application, then the Ray this process started (a Ray it joined is left running), then any
    process marked `node` (`serving.node_processes`) that outlived it.

    The application is deleted, so that its replicas finish the requests they hold (for `DRAIN_S` at most), then
    `ray.shutdown()` ends the controller, the proxy, the updater and the node. Not `serve.shutdown()`: its
    controller kills itself while the driver waits on it, which Ray prints as a failed task, and it waits 30 s
    for a controller that a signal to the whole process group has already ended. When the signal went to the
    whole group (`group_signalled`), or the node's GCS stops answering, Ray's processes are ending on their own:
    the deletion is skipped or given up, as calls to them would fail and Ray's core would print so.
    """
    import ray
    from ray import serve

    from serving.deployment import APP_NAME, DRAIN_S
    from serving.node_processes import end_node_processes

    try:
        if ray.is_initialized() and not group_signalled:
            gcs = ray.get_runtime_context().gcs_address
            deleting = Step(lambda: serve.delete(APP_NAME))
            if deleting.wait(DRAIN_S + 2, lambda: node_answers(gcs)) and deleting.error:
                log.debug("deleting the application failed: %s", deleting.error)
    finally:
        ray.shutdown()
        if node:
            end_node_processes(node)


def check_host(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback with no token: anyone who reaches it could teach the model."""
    if host not in (LOOPBACK, "localhost", "::1") and token is None:
        raise ValueError(
            f"host {host}: no token is set (REBQ_SERVE_TOKEN or --token-file), and a server reachable from "
            "other machines would let anyone send feedback, train and roll back; set one, and serve behind TLS"
        )


def serve_until_signalled(
    config: AppConfig, announce: Callable[[Addresses], None], ready_timeout_s: float = 300
) -> int:
    """Run the server until SIGINT or SIGTERM, then stop Serve and Ray; returns the exit code.

    The handlers are installed after Ray starts: its core worker installs its own for SIGTERM. A Ctrl-C while
    Ray starts ends the start; a signal while the application deploys (its replicas load their towers) stops
    the server without waiting for the deployment to finish.
    """
    from serving.auth import load_token
    from serving.node_processes import GroupCanary, mark_node

    check_host(config.server.host, load_token(config.server.auth))
    stop = threading.Event()
    canary = GroupCanary()
    previous, node = {}, mark_node()
    try:
        try:
            start_local_ray(config.ray, config.server)
        except KeyboardInterrupt:
            log.info("stopping")
            return 0
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        deploying = Step(lambda: deploy(config))
        if deploying.wait(float("inf"), lambda: not stop.is_set()) and deploying.error:
            raise deploying.error
        where = addresses(config)
        wait_until_healthy(where.api, ready_timeout_s, stop)
        if not stop.is_set():
            announce(where)
            stop.wait()
        log.info("stopping")
        return 0
    finally:
        shutdown(node, group_signalled=canary.died_within(GROUP_SIGNAL_S if stop.is_set() else 0))
        canary.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
