"""`rebq-serve`: the command line. Each sub-command imports what it needs when it runs."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("rebq_serve")


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML or JSON configuration file (see README)")


def _bench_towers(args: argparse.Namespace) -> int:
    from benchmarks import towers
    from serving.config import load_config

    results = towers.main(load_config(args.config).backbone, args.out, args.repeats)
    sys.stdout.write(towers.format_table(results) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rebq-serve", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="benchmarks that print figures and write JSON")
    benches = bench.add_subparsers(dest="bench", required=True)
    bench_towers = benches.add_parser("towers", help="tower latency: torch eager against ONNX Runtime")
    bench_towers.add_argument("--out", type=Path, required=True, help="JSON file to write")
    bench_towers.add_argument("--repeats", type=int, default=20, help="timed calls per figure (median)")
    _add_config(bench_towers)
    bench_towers.set_defaults(handler=_bench_towers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from serving.config import ConfigError

    try:
        return args.handler(args)
    except (ConfigError, FileNotFoundError) as error:
        log.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
