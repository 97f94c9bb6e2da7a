"""`server.state_dir` takes a path or a file:// URI, everywhere it is given; other schemes are refused."""

from pathlib import Path

import pydantic
import pytest

from serving.cli import build_parser
from serving.config import AppConfig, ConfigError, ServerConfig, load_config
from serving.deployment import BuilderArgs


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("state", Path("state")),
        ("/mnt/rebq-state", Path("/mnt/rebq-state")),
        ("file:///mnt/rebq-state", Path("/mnt/rebq-state")),
        ("FILE:///mnt/rebq-state/", Path("/mnt/rebq-state")),
        ("file://localhost/mnt/rebq-state", Path("/mnt/rebq-state")),
        ("file:///mnt/rebq%20state", Path("/mnt/rebq state")),
        (Path("/mnt/rebq-state"), Path("/mnt/rebq-state")),
    ],
)
def test_state_dir_takes_a_path_or_a_file_uri(given, expected):
    assert ServerConfig(state_dir=given).state_dir == expected
    assert BuilderArgs(state_dir=given).state_dir == expected


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ("s3://bucket/rebq-state", "not s3"),
        ("gs://bucket/rebq-state", "not gs"),
        ("https://example.com/rebq-state", "not https"),
        ("file://nfs-server/export/rebq-state", "a local path"),  # a host: not a path this node mounts
        ("file://", "a local path"),
        ("file:///mnt/rebq-state?version=3", "a local path"),
    ],
)
def test_other_locations_are_refused_naming_the_field(given, named):
    with pytest.raises(pydantic.ValidationError, match=named) as refused:
        AppConfig.model_validate({"server": {"state_dir": given}})
    assert refused.value.errors()[0]["loc"] == ("server", "state_dir")
    with pytest.raises(pydantic.ValidationError, match="state_dir"):
        BuilderArgs(state_dir=given)


def test_a_config_file_with_a_file_uri_loads_as_a_path(tmp_path):
    config = tmp_path / "rebq.yaml"
    config.write_text("server:\n  state_dir: file:///mnt/rebq-state\n")
    assert load_config(config).server.state_dir == Path("/mnt/rebq-state")
    config.write_text("server:\n  state_dir: s3://bucket/state\n")
    with pytest.raises(ConfigError, match=r"server\.state_dir: .*not s3"):
        load_config(config)


def test_overrides_keep_the_path(tmp_path):
    changed = AppConfig().with_overrides(state_dir="file:///mnt/rebq-state").with_overrides(port=8001)
    assert changed.server.state_dir == Path("/mnt/rebq-state")


def test_the_state_dir_flag_takes_the_same_forms(capsys):
    parser = build_parser()
    args = parser.parse_args(["serve", "--state-dir", "file:///mnt/rebq-state"])
    assert args.state_dir == Path("/mnt/rebq-state")
    faults = parser.parse_args(
        ["bench", "faults", "--data", "d.jsonl", "--out", "f.json", "--state-dir", "file:///mnt/rebq%20state"]
    )
    assert faults.state_dir == Path("/mnt/rebq state")
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--data", "d.jsonl", "--state-dir", "s3://bucket/state"])
    assert "state_dir must be a path or a file:// URI" in capsys.readouterr().err


def test_direct_ingress_gives_each_replica_a_port_and_the_proxy_the_next():
    server = ServerConfig(port=9000, replicas=3)
    assert list(server.replica_ports) == [9000, 9001, 9002]
    assert server.serve_proxy_port == 9003
    assert ServerConfig(port=9000, proxy_port=7000).serve_proxy_port == 7000


def test_proxy_ingress_puts_serves_proxy_on_the_port():
    server = ServerConfig(port=9000, replicas=3, ingress="proxy", proxy_port=7000)
    assert list(server.replica_ports) == [] and server.serve_proxy_port == 9000


@pytest.mark.parametrize(
    "given, named",
    [
        ({"replicas": 2, "proxy_port": 9001}, "proxy_port 9001"),
        ({"proxy_port": 9000}, "proxy_port 9000"),
        ({"port": 65535}, "proxy_port: 65536"),
        ({"port": 65535, "replicas": 2, "proxy_port": 80}, "port 65535"),
        ({"ingress": "sideways"}, "ingress"),
    ],
)
def test_ports_that_collide_or_overflow_are_refused_naming_the_field(given, named):
    with pytest.raises(pydantic.ValidationError, match=named):
        ServerConfig.model_validate({"port": 9000, **given})


def test_the_ingress_flag_overrides_the_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("server:\n  ingress: proxy\n")
    args = build_parser().parse_args(["serve", "--ingress", "direct", "--config", str(path)])
    config = load_config(args.config).with_overrides(ingress=args.ingress)
    assert config.server.ingress == "direct"
    assert load_config(path).with_overrides(ingress=None).server.ingress == "proxy"
