"""The deployment manifests parse, name what exists, and ask for consistent resources."""

from pathlib import Path

import pydantic
import pytest
import yaml
from ray.serve import Application
from ray.serve.schema import ServeDeploySchema

from serving import deployment

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
    from serving.config import RayConfig

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
