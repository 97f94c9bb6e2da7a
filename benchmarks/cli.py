"""`rebq-serve bench ...`: the benchmarks' sub-commands, added to the command line as an entry point."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serving.cli import add_config_argument, add_precision_argument, state_dir_argument


def _bench_towers(args: argparse.Namespace) -> int:
    from benchmarks import towers
    from serving.config import load_config

    results = towers.main(load_config(args.config).backbone, args.out, args.repeats)
    sys.stdout.write(towers.format_table(results) + "\n")
    return 0


def _bench_shapes(args: argparse.Namespace) -> int:
    from benchmarks import shapes
    from serving.config import load_config

    config = load_config(args.config).with_overrides(device=args.device).backbone
    sys.stdout.write(shapes.format_table(shapes.main(config, args.out)) + "\n")
    return 0


def _bench_cmml(args: argparse.Namespace) -> int:
    from benchmarks import cmml
    from serving.config import load_config

    app = load_config(args.config).with_overrides(precision=args.precision)
    config = cmml.CmmlConfig(
        data=args.data,
        tasks=args.tasks,
        missing_rate=args.missing_rate,
        missing_type=args.missing_type,
        seeds=args.seeds,
        min_per_class=args.min_per_class,
        validation=args.validation,
        **({"methods": tuple(args.methods)} if args.methods else {}),
        exemplar_budgets_kib=tuple(args.exemplar_budgets or ()),
        learner=app.learner,
        trainer=app.trainer,
        holdout_fraction=app.updater.holdout_fraction,
    )
    results = cmml.main(config, app.backbone, args.out, args.plot)
    sys.stdout.write(cmml.format_table(results) + "\n")
    return 0


def _bench_load(args: argparse.Namespace) -> int:
    from benchmarks import load
    from serving.config import load_config

    app = load_config(args.config).with_overrides(precision=args.precision)
    if args.state_dir:
        app = app.with_overrides(state_dir=args.state_dir)
    config = load.LoadConfig(
        url=args.url,
        concurrency=args.concurrency,
        requests=args.requests,
        mix=load.parse_mix(args.mix),
        data=args.data,
        single_requests=args.single_requests,
        compare_precisions=args.compare_precisions,
    )
    result = load.main(config, app, args.out)
    sys.stdout.write(load.format_report(result) + "\n")
    return 0


def _bench_swap(args: argparse.Namespace) -> int:
    from benchmarks import swap

    config = swap.SwapConfig(
        url=args.url,
        swaps=args.swaps,
        concurrency=args.concurrency,
        interval_s=args.interval,
        baseline_s=args.baseline,
        data=args.data,
        freshness_samples=args.freshness_samples,
    )
    result = swap.main(config, args.out)
    sys.stdout.write(swap.format_report(result) + "\n")
    return 0


def _bench_faults(args: argparse.Namespace) -> int:
    from benchmarks import faults
    from serving.config import load_config

    app = load_config(args.config)
    server = {"url": args.url, "state_dir": (args.state_dir or app.server.state_dir).resolve(), "ray": app.ray}
    sizes = {"concurrency": args.concurrency, "samples_per_class": args.samples_per_class, "settle_s": args.settle}
    config = faults.FaultsConfig(data=args.data, **server, **sizes)
    result = faults.main(config, args.out)
    sys.stdout.write(faults.format_report(result) + "\n")
    return 0 if result["lost_samples"] == 0 and all(fault["passed"] for fault in result["faults"]) else 1


def _bench_power_cut(args: argparse.Namespace) -> int:
    from benchmarks import power_cut
    from serving.config import load_config

    config = power_cut.PowerCutConfig(
        data=args.data, work_dir=args.work_dir.resolve(), cycles=args.cycles, seed=args.seed
    )
    result = power_cut.main(config, load_config(args.config), args.out)
    sys.stdout.write(power_cut.format_report(result) + "\n")
    return 0 if result["passed"] else 1


def add_bench_commands(commands) -> None:
    """Add `bench` and its sub-commands to the command line's sub-parsers `commands`."""
    from model.strategies import STRATEGIES

    methods = ["rebq", *STRATEGIES, "prompt_no_rec", "head_only", "joint"]
    bench = commands.add_parser("bench", help="benchmarks that print figures and write JSON")
    benches = bench.add_subparsers(dest="bench", required=True)
    bench_towers = benches.add_parser(
        "towers", help="tower latency: torch eager against ONNX Runtime, fp32 and int8"
    )
    bench_towers.add_argument("--out", type=Path, required=True, help="JSON file to write")
    bench_towers.add_argument("--repeats", type=int, default=20, help="timed calls per figure (median)")
    add_config_argument(bench_towers)
    bench_towers.set_defaults(handler=_bench_towers)

    bench_shapes = benches.add_parser("shapes", help="the ONNX image tower as batch sizes change, free or fixed")
    bench_shapes.add_argument("--out", type=Path, required=True, help="JSON file to write")
    bench_shapes.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the tower runs")
    add_config_argument(bench_shapes)
    bench_shapes.set_defaults(handler=_bench_shapes)

    bench_cmml = benches.add_parser("cmml", help="continual missing-modality benchmark (RebQ protocol)")
    bench_cmml.add_argument("--data", type=Path, required=True, help="JSONL data set")
    bench_cmml.add_argument("--tasks", type=int, default=5)
    bench_cmml.add_argument("--missing-rate", type=float, default=0.7)
    bench_cmml.add_argument("--missing-type", choices=["both", "image", "text"], default="both")
    bench_cmml.add_argument("--seeds", type=int, default=3)
    bench_cmml.add_argument("--min-per-class", type=int, default=20)
    bench_cmml.add_argument("--validation", action="store_true", help="score on a validation split of train")
    bench_cmml.add_argument(
        "--methods",
        nargs="+",
        help=f"methods to run ({', '.join(methods)}); default: all",
    )
    bench_cmml.add_argument(
        "--exemplar-budgets",
        type=int,
        nargs="+",
        metavar="KIB",
        help="also run exemplar_replay with each of these buffer budgets, in KiB (--plot adds *-budgets.png)",
    )
    bench_cmml.add_argument("--out", type=Path, required=True, help="JSON file to write")
    bench_cmml.add_argument("--plot", type=Path, help="PNG file to write")
    add_precision_argument(bench_cmml)
    add_config_argument(bench_cmml)
    bench_cmml.set_defaults(handler=_bench_cmml)

    bench_load = benches.add_parser("load", help="a running server under load, beside the pipeline in-process")
    bench_load.add_argument("--url", default="http://127.0.0.1:8000", help="the running server")
    bench_load.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    bench_load.add_argument("--requests", type=int, default=400, help="requests to send (after a warm-up)")
    bench_load.add_argument(
        "--mix",
        default="complete=0.4,text_missing=0.3,image_missing=0.3",
        help="shares of the missing patterns complete, text_missing and image_missing",
    )
    bench_load.add_argument("--data", type=Path, required=True, help="JSONL data set the requests are made from")
    bench_load.add_argument("--single-requests", type=int, default=40, help="one-at-a-time requests timed")
    bench_load.add_argument(
        "--state-dir", type=state_dir_argument, help="the server's state directory, for the in-process run"
    )
    bench_load.add_argument("--out", type=Path, required=True, help="JSON file to write")
    add_precision_argument(bench_load)  # of the in-process pipeline; the server runs what it was started with
    bench_load.add_argument(
        "--compare-precisions",
        action="store_true",
        help="also time the in-process pipeline at fp32 and at int8, in turns, on the same requests",
    )
    add_config_argument(bench_load)
    bench_load.set_defaults(handler=_bench_load)

    bench_swap = benches.add_parser("swap", help="version swaps under load, and the freshness of a fed task")
    bench_swap.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (two versions)")
    bench_swap.add_argument("--swaps", type=int, default=10, help="rollbacks and forwards, alternating")
    bench_swap.add_argument("--concurrency", type=int, default=8, help="requests in flight all along")
    bench_swap.add_argument("--interval", type=float, default=3.0, help="seconds between swaps")
    bench_swap.add_argument("--baseline", type=float, default=10.0, help="seconds of load before the swaps")
    bench_swap.add_argument("--data", type=Path, help="JSONL: also time a fed task's freshness")
    bench_swap.add_argument("--freshness-samples", type=int, default=100, help="samples in the fresh task")
    bench_swap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    bench_swap.set_defaults(handler=_bench_swap)

    bench_faults = benches.add_parser(
        "faults", help="a killed updater, a killed replica, a corrupted state and wrecking feedback, under load"
    )
    bench_faults.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (a task learned)")
    bench_faults.add_argument("--data", type=Path, required=True, help="JSONL: learned classes and two new ones")
    bench_faults.add_argument(
        "--state-dir", type=state_dir_argument, help="the server's state directory (default ./state)"
    )
    bench_faults.add_argument("--concurrency", type=int, default=4, help="predictions in flight all along")
    bench_faults.add_argument("--samples-per-class", type=int, default=20, help="of each class of the new task")
    bench_faults.add_argument("--settle", type=float, default=3.0, help="seconds of load before each fault")
    bench_faults.add_argument("--out", type=Path, required=True, help="JSON file to write")
    add_config_argument(bench_faults)
    bench_faults.set_defaults(handler=_bench_faults)

    bench_power_cut = benches.add_parser(
        "power-cut", help="start a server, SIGKILL all its processes while it learns, start it again; N times"
    )
    bench_power_cut.add_argument("--data", type=Path, required=True, help="JSONL: the classes fed as new tasks")
    bench_power_cut.add_argument(
        "--work-dir", type=Path, required=True, help="a new folder: the server's state and each start's output"
    )
    bench_power_cut.add_argument("--cycles", type=int, default=20, help="power cuts, each followed by a restart")
    bench_power_cut.add_argument("--seed", type=int, default=0, help="draws the moments of the cuts")
    bench_power_cut.add_argument("--out", type=Path, required=True, help="JSON file to write")
    add_config_argument(bench_power_cut)
    bench_power_cut.set_defaults(handler=_bench_power_cut)
