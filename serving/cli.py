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


def _bench_cmml(args: argparse.Namespace) -> int:
    from benchmarks import cmml
    from serving.config import load_config

    app = load_config(args.config)
    config = cmml.CmmlConfig(
        data=args.data,
        tasks=args.tasks,
        missing_rate=args.missing_rate,
        missing_type=args.missing_type,
        seeds=args.seeds,
        min_per_class=args.min_per_class,
        validation=args.validation,
        learner=app.learner,
        trainer=app.trainer,
    )
    results = cmml.main(config, app.backbone, args.out, args.plot)
    sys.stdout.write(cmml.format_table(results) + "\n")
    return 0


def _train(args: argparse.Namespace) -> int:
    from serving.config import load_config
    from updater.offline import train_offline

    app = load_config(args.config)
    for state in train_offline(args.data, args.state_dir, args.tasks, app):
        sys.stdout.write(f"version {state.version}: {', '.join(state.manifest.tasks[-1].classes)}\n")
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

    bench_cmml = benches.add_parser("cmml", help="continual missing-modality benchmark (RebQ protocol)")
    bench_cmml.add_argument("--data", type=Path, required=True, help="JSONL data set")
    bench_cmml.add_argument("--tasks", type=int, default=5)
    bench_cmml.add_argument("--missing-rate", type=float, default=0.7)
    bench_cmml.add_argument("--missing-type", choices=["both", "image", "text"], default="both")
    bench_cmml.add_argument("--seeds", type=int, default=3)
    bench_cmml.add_argument("--min-per-class", type=int, default=20)
    bench_cmml.add_argument("--validation", action="store_true", help="score on a validation split of train")
    bench_cmml.add_argument("--out", type=Path, required=True, help="JSON file to write")
    bench_cmml.add_argument("--plot", type=Path, help="PNG file to write")
    _add_config(bench_cmml)
    bench_cmml.set_defaults(handler=_bench_cmml)

    train = commands.add_parser("train", help="learn a JSONL data set task by task, offline")
    train.add_argument("--data", type=Path, required=True, help="JSONL data set")
    train.add_argument("--state-dir", type=Path, required=True, help="where PromptState versions are written")
    train.add_argument("--tasks", type=int, help="split the classes into this many tasks (without task fields)")
    _add_config(train)
    train.set_defaults(handler=_train)
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
    except (ConfigError, FileNotFoundError, ValueError) as error:
        log.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
