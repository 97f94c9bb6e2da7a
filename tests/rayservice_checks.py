"""What a KubeRay RayService for rebq-serve must hold, as a list of problems; none means it is consistent.

It reads the manifest's documents (the RayService, its PersistentVolumeClaim and ConfigMap) the way
KubeRay and our app builder would: the Serve config, the builder args and the rebq-serve config are
validated by the code that will read them, and resources, volumes and ports are compared across pods.
"""

from __future__ import annotations

import importlib
from pathlib import PurePosixPath

import pydantic
import yaml
from ray.serve.schema import ServeDeploySchema

from serving.auth import TOKEN_VARIABLE
from serving.config import AppConfig
from serving.deployment import BuilderArgs

GPU = "nvidia.com/gpu"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
KUBERAY_METRICS_PORT = "8080"  # what KubeRay passes to `ray start` when rayStartParams name none


def ray_service(documents: list[dict]) -> dict | None:
    return next((doc for doc in documents if doc.get("kind") == "RayService"), None)


def document(documents: list[dict], kind: str, name: str) -> dict | None:
    return next((doc for doc in documents if doc.get("kind") == kind and doc["metadata"]["name"] == name), None)


def groups(service: dict) -> dict[str, dict]:
    """The head group and each worker group, by name."""
    cluster = service["spec"]["rayClusterConfig"]
    named = {group["groupName"]: group for group in cluster["workerGroupSpecs"]}
    return {"head": cluster["headGroupSpec"], **named}


def workers(service: dict) -> list[dict]:
    return service["spec"]["rayClusterConfig"]["workerGroupSpecs"]


def ray_container(group: dict) -> dict:
    return group["template"]["spec"]["containers"][0]  # KubeRay runs Ray in the first container


def serve_config(service: dict) -> dict:
    return yaml.safe_load(service["spec"]["serveConfigV2"])


def quantity(value: str | float | None) -> float:
    """A Kubernetes CPU or GPU quantity ("500m", "2", 1) as a number; none is 0."""
    if value is None:
        return 0.0
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def resource(group: dict, name: str, kind: str = "limits") -> float:
    return quantity(ray_container(group).get("resources", {}).get(kind, {}).get(name))


def volume_at(group: dict, path: PurePosixPath) -> tuple[str, dict] | None:
    """The mount path and volume under which `path` lies in the group's Ray container."""
    volumes = {volume["name"]: volume for volume in group["template"]["spec"].get("volumes", [])}
    for mount in ray_container(group).get("volumeMounts", []):
        if path.is_relative_to(mount["mountPath"]):
            return mount["mountPath"], volumes.get(mount["name"], {})
    return None


def problems(documents: list[dict]) -> list[str]:
    service = ray_service(documents)
    if service is None or service.get("apiVersion") != "ray.io/v1":
        return ["no RayService of apiVersion ray.io/v1"]
    try:
        ServeDeploySchema.model_validate(serve_config(service))
        (app,) = serve_config(service)["applications"]
        args = BuilderArgs.model_validate(app.get("args", {}))
    except (pydantic.ValidationError, ValueError) as error:
        return [f"serveConfigV2: {error}"]
    found = import_path_problems(app["import_path"]) + state_volume_problems(documents, service, args)
    config, config_problems = rebq_config(documents, service, args)
    found += config_problems
    if config is not None:
        found += resource_problems(service, app, config)
    return found + metrics_problems(service) + exposure_problems(service) + cluster_problems(service)


def import_path_problems(import_path: str) -> list[str]:
    module, _, name = import_path.partition(":")
    try:
        builder = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        return [f"import_path {import_path}: {error}"]
    return [] if callable(builder) else [f"import_path {import_path}: not callable"]


def state_volume_problems(documents: list[dict], service: dict, args: BuilderArgs) -> list[str]:
    """The state directory lies on one ReadWriteMany claim, mounted in every pod where it names it."""
    state_dir = PurePosixPath(args.state_dir)
    if not state_dir.is_absolute():
        return [f"state_dir {state_dir} is relative: it would be a different folder in each pod"]
    found, claims = [], set()
    for name, group in groups(service).items():
        mounted = volume_at(group, state_dir)
        if mounted is None:
            found.append(f"{name}: state_dir {state_dir} is on no volume mount")
        elif "persistentVolumeClaim" not in mounted[1]:
            found.append(f"{name}: state_dir {state_dir} is on {mounted[0]}, not a PersistentVolumeClaim")
        else:
            claims.add(mounted[1]["persistentVolumeClaim"]["claimName"])
    if len(claims) > 1:
        found.append(f"state_dir {state_dir} is on different claims in different pods: {sorted(claims)}")
    for claim in claims:
        pvc = document(documents, "PersistentVolumeClaim", claim)
        modes = pvc["spec"].get("accessModes", []) if pvc else []
        if pvc is None:
            found.append(f"PersistentVolumeClaim {claim} is not in the manifest")
        elif "ReadWriteMany" not in modes:
            found.append(f"PersistentVolumeClaim {claim}: accessModes {modes} lack ReadWriteMany")
    return found


def rebq_config(documents: list[dict], service: dict, args: BuilderArgs) -> tuple[AppConfig | None, list[str]]:
    """The rebq-serve config the builder reads: a ConfigMap key mounted in every pod (the build runs on any)."""
    if args.config is None:
        return AppConfig(), []
    path = PurePosixPath(args.config)
    sources = set()
    for name, group in groups(service).items():
        mounted = volume_at(group, path)
        if mounted is None or "configMap" not in mounted[1]:
            return None, [f"{name}: config {path} is on no ConfigMap volume"]
        sources.add((mounted[1]["configMap"]["name"], str(path.relative_to(mounted[0]))))
    if len(sources) > 1:
        return None, [f"config {path} comes from different ConfigMaps in different pods: {sorted(sources)}"]
    ((name, key),) = sources
    config_map = document(documents, "ConfigMap", name)
    if config_map is None or key not in config_map.get("data", {}):
        return None, [f"config {path}: ConfigMap {name} with a key {key} is not in the manifest"]
    try:
        return AppConfig.model_validate(yaml.safe_load(config_map["data"][key]) or {}), []
    except pydantic.ValidationError as error:
        return None, [f"config {path}: {error}"]


def most_replicas(deployment: dict) -> int:
    if deployment.get("autoscaling_config"):
        return deployment["autoscaling_config"].get("max_replicas", 1)
    replicas = deployment.get("num_replicas", 1)
    return replicas if isinstance(replicas, int) else 1


def resource_problems(service: dict, app: dict, config: AppConfig) -> list[str]:
    """GPUs on workers only; a replica fits in a worker pod; the workers hold every replica and the updater."""
    head = groups(service)["head"]
    found = [f"head: asks for {GPU}"] if resource(head, GPU) or resource(head, GPU, "requests") else []
    if not any(resource(group, GPU) >= 1 for group in workers(service)):
        found.append(f"no worker group has {GPU} limits")
    needed = config.gpu_shares(cluster_gpus=0.0).updater  # what the updater asks for before GPU pods are up
    for deployment in app.get("deployments", []):
        name, options = deployment["name"], deployment.get("ray_actor_options", {})
        cpus, gpus = options.get("num_cpus", 1), options.get("num_gpus", 0)
        if not any(resource(pod, "cpu") >= cpus and resource(pod, GPU) >= gpus for pod in workers(service)):
            found.append(f"deployment {name}: num_cpus {cpus} and num_gpus {gpus} fit in no worker pod")
        if (gpus > 0) != (config.backbone.device == "cuda"):
            found.append(f"deployment {name}: num_gpus {gpus} with backbone.device {config.backbone.device}")
        needed += gpus * most_replicas(deployment)
    capacity = sum(group["maxReplicas"] * resource(group, GPU) for group in workers(service))
    if needed > capacity:
        found.append(f"GPUs: the replicas and the updater need {needed:g}, the worker pods hold {capacity:g}")
    return found


def metrics_problems(service: dict) -> list[str]:
    found = []
    for name, group in groups(service).items():
        port = str(group.get("rayStartParams", {}).get("metrics-export-port", KUBERAY_METRICS_PORT))
        ports = ray_container(group).get("ports", [])
        declared = sorted(str(each["containerPort"]) for each in ports if each.get("name") == "metrics")
        if declared != [port]:
            found.append(f"{name}: Ray's metrics port {port} is not the container port named metrics {declared}")
    return found


def exposure_problems(service: dict) -> list[str]:
    """A proxy reachable beyond the pod must have the bearer token, from a Secret."""
    host = serve_config(service).get("http_options", {}).get("host", "0.0.0.0")
    if host in LOOPBACK:
        return []
    found = []
    for name, group in groups(service).items():
        env = {variable["name"]: variable for variable in ray_container(group).get("env", [])}
        if "secretKeyRef" not in env.get(TOKEN_VARIABLE, {}).get("valueFrom", {}):
            found.append(f"{name}: the proxy listens on {host} but {TOKEN_VARIABLE} comes from no Secret")
    return found


def cluster_problems(service: dict) -> list[str]:
    found = []
    images = {ray_container(group)["image"] for group in groups(service).values()}
    if len(images) > 1:
        found.append(f"the pods run different images: {sorted(images)}")
    strategy = service["spec"].get("upgradeStrategy", {}).get("type", "NewCluster")
    if strategy != "None":
        found.append(f"upgradeStrategy {strategy}: an upgrade would run a second cluster and updater on one state")
    return found
