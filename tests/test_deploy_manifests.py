"""The deployment manifests parse, name what exists, and ask for consistent resources."""

import copy
from pathlib import Path

import pydantic
import pytest
import yaml
from ray.serve import Application
from ray.serve.schema import ServeDeploySchema

from serving import deployment
from serving.config import RayConfig
from tests import rayservice_checks as checks

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.fixture(scope="module")
def serve_config() -> dict:
    return yaml.safe_load((DEPLOY / "serve_config.yaml").read_text())


def test_serve_config_is_a_valid_serve_deploy_file(serve_config):
    schema = ServeDeploySchema.model_validate(serve_config)
    (app,) = schema.applications
    assert app.import_path == "serving.deployment:app_builder" and app.route_prefix == "/"
    assert schema.http_options.host == "127.0.0.1"


def test_its_deployment_and_resources_match_the_code(serve_config):
    (app,) = serve_config["applications"]
    (settings,) = app["deployments"]
    assert settings["name"] == deployment.DEPLOYMENT_NAME
    scaling = settings["autoscaling_config"]
    assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"] and "num_replicas" not in settings
    assert settings["ray_actor_options"]["num_cpus"] > 0 and settings["ray_actor_options"]["num_gpus"] >= 0
    assert app["runtime_env"]["env_vars"]["HF_HUB_OFFLINE"] == "1"
    deployment.BuilderArgs.model_validate(app["args"])  # the args the builder takes, no more


def test_the_builder_makes_the_application(live_server, tmp_path):
    # live_server: a local Ray is up, so the builder can find or start the updater actor
    assert isinstance(deployment.app_builder({"state_dir": str(tmp_path)}), Application)
    with pytest.raises(pydantic.ValidationError, match="replicas"):
        deployment.app_builder({"state_dir": str(tmp_path), "replicas": 2})


def test_prometheus_scrapes_the_default_metrics_port():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{RayConfig().metrics_port}"]


def test_the_dashboard_queries_only_metrics_the_server_declares():
    import json
    import re

    source = (Path(deployment.__file__).parent / "metrics.py").read_text()
    declared = {f"ray_{name}" for name in re.findall(r'"(rebq_[a-z_]+)"', source)}
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert expressions
    panels = dashboard["panels"]
    assert len(panels) >= 7 and len({panel["id"] for panel in panels}) == len(panels)
    for expression in expressions:
        for metric in re.findall(r"ray_rebq_[a-z_]+", expression):
            base = re.sub(r"_(total|bucket|sum|count)$", "", metric)
            assert base in declared, f"{metric} in the dashboard is not declared in serving/metrics.py"


@pytest.fixture(scope="module")
def rayservice() -> list[dict]:
    return list(yaml.safe_load_all((DEPLOY / "kuberay" / "rayservice.yaml").read_text()))


def test_the_rayservice_is_consistent(rayservice):
    assert checks.problems(rayservice) == []


def test_the_rayservice_deploys_the_serve_config_app_on_gpus(rayservice, serve_config):
    service = checks.ray_service(rayservice)
    (on_cluster,) = checks.serve_config(service)["applications"]
    (local,) = serve_config["applications"]
    for key in ("name", "route_prefix", "import_path", "runtime_env"):
        assert on_cluster[key] == local[key], key
    assert on_cluster["args"].keys() == local["args"].keys()
    assert on_cluster["args"]["state_dir"].startswith("file:///")
    ((replicas,), (local_replicas,)) = on_cluster["deployments"], local["deployments"]
    for key in ("name", "max_ongoing_requests", "autoscaling_config"):
        assert replicas[key] == local_replicas[key], key
    assert replicas["ray_actor_options"] == {**local_replicas["ray_actor_options"], "num_gpus": 1}
    for group in checks.groups(service).values():  # where deploy/prometheus/prometheus.yml looks
        assert group["rayStartParams"]["metrics-export-port"] == str(RayConfig().metrics_port)


def head(documents: list[dict]) -> dict:
    return checks.groups(checks.ray_service(documents))["head"]


def worker(documents: list[dict]) -> dict:
    (group,) = checks.workers(checks.ray_service(documents))
    return group


def container(group: dict) -> dict:
    return checks.ray_container(group)


def limits(group: dict) -> dict:
    return container(group)["resources"]["limits"]


def in_app(change):
    """A breakage of the application in serveConfigV2, written back as YAML."""

    def apply(documents: list[dict]) -> None:
        spec = checks.ray_service(documents)["spec"]
        config = yaml.safe_load(spec["serveConfigV2"])
        change(config["applications"][0])
        spec["serveConfigV2"] = yaml.safe_dump(config)

    return apply


def replica_options(**options):
    return in_app(lambda app: app["deployments"][0]["ray_actor_options"].update(options))


def builder_args(**args):
    return in_app(lambda app: app["args"].update(args))


def rebq_config(text: str):
    return lambda d: checks.document(d, "ConfigMap", "rebq-serve-config")["data"].update({"config.yaml": text})


def state_volume_as_empty_dir(documents: list[dict]) -> None:
    volumes = worker(documents)["template"]["spec"]["volumes"]
    (volume,) = [volume for volume in volumes if volume["name"] == "rebq-state"]
    del volume["persistentVolumeClaim"]
    volume["emptyDir"] = {}


def read_write_once(documents: list[dict]) -> None:
    checks.document(documents, "PersistentVolumeClaim", "rebq-state")["spec"]["accessModes"] = ["ReadWriteOnce"]


BROKEN = {  # what breaks a copy of the manifest, and what the checker must say
    "no-gpu": (lambda d: limits(worker(d)).pop(checks.GPU), "no worker group has nvidia.com/gpu limits"),
    "gpu-head": (lambda d: limits(head(d)).update({checks.GPU: "1"}), "head: asks for nvidia.com/gpu"),
    "2-gpus": (replica_options(num_gpus=2), "num_cpus 1 and num_gpus 2 fit in no worker pod"),
    "8-cpus": (replica_options(num_cpus=8), "num_cpus 8 and num_gpus 1 fit in no worker pod"),
    "few-pods": (lambda d: worker(d).update(maxReplicas=4), "need 5, the worker pods hold 4"),
    "state-off-volume": (builder_args(state_dir="/data/rebq"), "head: state_dir /data/rebq is on no volume mount"),
    "state-elsewhere-on-workers": (
        lambda d: container(worker(d))["volumeMounts"][0].update(mountPath="/mnt/other"),
        "gpu: state_dir /mnt/rebq-state is on no volume mount",
    ),
    "state-on-empty-dir": (state_volume_as_empty_dir, "gpu: state_dir /mnt/rebq-state is on /mnt/rebq-state, not"),
    "rwo-claim": (read_write_once, "accessModes ['ReadWriteOnce'] lack ReadWriteMany"),
    "import-path": (in_app(lambda app: app.update(import_path="serving.deployment:none")), "import_path serving"),
    "unknown-arg": (builder_args(replicas=2), "replicas"),
    "s3-state": (builder_args(state_dir="s3://bucket/rebq"), "not s3"),
    "towers-on-cpu": (rebq_config("backbone:\n  device: cpu\n"), "num_gpus 1 with backbone.device cpu"),
    "bad-rebq-config": (rebq_config("port: 1\n"), "Extra inputs are not permitted"),
    "metrics-port": (
        lambda d: head(d)["rayStartParams"].update({"metrics-export-port": "9090"}),
        "head: Ray's metrics port 9090",
    ),
    "no-token": (lambda d: container(worker(d)).pop("env"), "gpu: the proxy listens on 0.0.0.0 but REBQ_SERVE"),
    "two-images": (lambda d: container(worker(d)).update(image="other:1"), "the pods run different images"),
    "upgrades": (lambda d: checks.ray_service(d)["spec"].pop("upgradeStrategy"), "upgradeStrategy NewCluster"),
    "api": (lambda d: checks.ray_service(d).update(apiVersion="ray.io/v1alpha1"), "no RayService of apiVersion"),
}


@pytest.mark.parametrize("breakage", BROKEN)
def test_the_checker_refuses_a_broken_copy(rayservice, breakage):
    break_it, expected = BROKEN[breakage]
    broken = copy.deepcopy(rayservice)
    break_it(broken)
    found = checks.problems(broken)
    assert any(expected in problem for problem in found), found
