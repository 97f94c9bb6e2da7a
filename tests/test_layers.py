"""The packages' layers, as pyproject.toml's import-linter contracts state them: model <- updater <- serving <-
benchmarks, and model free of Ray, HTTP and Prometheus."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold():
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_a_command_group_from_above_reaches_the_command_line_without_an_import():
    from serving.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["bench", "cmml", "--data", "d.jsonl", "--out", "o.json", "--seeds", "2"])
    assert args.handler.__module__ == "benchmarks.cli" and args.seeds == 2
