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


def state_dir_argument(text: str) -> Path:
    """`--state-dir`: a path or a file:// URI, as `server.state_dir` takes it."""
    from serving.config import state_path

    try:
        return state_path(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


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

    app = load_config(args.config)
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
    )
    results = cmml.main(config, app.backbone, args.out, args.plot)
    sys.stdout.write(cmml.format_table(results) + "\n")
    return 0


def _bench_load(args: argparse.Namespace) -> int:
    from benchmarks import load
    from serving.config import load_config

    app = load_config(args.config)
    if args.state_dir:
        app = app.with_overrides(state_dir=args.state_dir)
    config = load.LoadConfig(
        url=args.url,
        concurrency=args.concurrency,
        requests=args.requests,
        mix=load.parse_mix(args.mix),
        data=args.data,
        single_requests=args.single_requests,
    )
    result = load.main(config, app, args.out)
    sys.stdout.write(load.format_report(result) + "\n")
    return 0


def client_token(token_file: Path | None) -> str | None:
    """The token a client sends: REBQ_SERVE_TOKEN, else the file's content."""
    from serving.auth import TOKEN_VARIABLE

    if os.environ.get(TOKEN_VARIABLE):
        return os.environ[TOKEN_VARIABLE].strip()
    return token_file.read_text().strip() if token_file else None


def _feed(args: argparse.Namespace) -> int:
    from serving.feed import FeedError, feed

    try:
        labels = [label.strip() for label in args.labels.split(",")] if args.labels else None
        token = client_token(args.token_file)
        result = feed(args.path, args.url, args.task, args.batch, labels, args.limit, token=token)
    except FeedError as error:
        log.error("%s", error)
        return 1
    sys.stdout.write(f"accepted {result.accepted} samples in {result.batches} requests; log at {result.offset}\n")
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


def _train(args: argparse.Namespace) -> int:
    from serving.config import load_config
    from updater.offline import train_offline

    app = load_config(args.config)
    for state in train_offline(args.data, args.state_dir, args.tasks, app):
        sys.stdout.write(f"version {state.version}: {', '.join(state.manifest.tasks[-1].classes)}\n")
    return 0


def announcement(where) -> str:
    """Where the API, the docs and the metrics are: one line each."""
    lines = [("API", f"{where.api}/v1/predict"), ("docs", where.docs), ("metrics", where.metrics)]
    if len(where.replicas) > 1:
        lines.insert(1, ("replicas", " ".join(where.replicas) + " (each replica's own, no proxy hop)"))
    elif where.replicas:
        lines.insert(1, ("proxy", f"{where.proxy}/v1/predict (the same through Serve's proxy)"))
    return "".join(f"  {name:<9}{value}\n" for name, value in lines)


def _serve(args: argparse.Namespace) -> int:
    from model.published import load_published
    from model.state import refuse_changed_learner
    from serving.config import load_config
    from serving.launcher import serve_until_signalled

    app = load_config(args.config).with_overrides(
        device=args.device,
        host=args.host,
        port=args.port,
        replicas=args.replicas,
        ingress=args.ingress,
        state_dir=args.state_dir.resolve() if args.state_dir else None,
    )
    if args.token_file:
        auth = app.server.auth.model_copy(update={"token_file": args.token_file.resolve()})
        app = app.model_copy(update={"server": app.server.model_copy(update={"auth": auth})})
    if not app.server.state_dir.is_absolute():
        app = app.with_overrides(state_dir=app.server.state_dir.resolve())
    published = load_published(app.server.state_dir)
    if published is not None:  # the updater goes on from it: refused now rather than at its first training
        refuse_changed_learner(app.learner, published)

    def announce(where) -> None:
        banner = f"rebq-serve is up: serving {app.server.state_dir}\n{announcement(where)}Ctrl-C stops it.\n"
        sys.stdout.write(banner)
        sys.stdout.flush()

    return serve_until_signalled(app, announce)


def build_parser() -> argparse.ArgumentParser:
    from model.strategies import STRATEGIES

    methods = ["rebq", *STRATEGIES, "prompt_no_rec", "head_only", "joint"]
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

    bench_shapes = benches.add_parser("shapes", help="the ONNX image tower as batch sizes change, free or fixed")
    bench_shapes.add_argument("--out", type=Path, required=True, help="JSON file to write")
    bench_shapes.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the tower runs")
    _add_config(bench_shapes)
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
    _add_config(bench_cmml)
    bench_cmml.set_defaults(handler=_bench_cmml)

    bench_load = benches.add_parser("load", help="a running server under load, beside the pipeline in-process")
    bench_load.add_argument("--url", default="http://127.0.0.1:8000", help="the running server")
    bench_load.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    bench_load.add_argument("--requests", type=int, default=400, help="requests to send (after a warm-up)")
    bench_load.add_argument("--mix", default="complete=0.4,image=0.3,text=0.3", help="shares of missing patterns")
    bench_load.add_argument("--data", type=Path, required=True, help="JSONL data set the requests are made from")
    bench_load.add_argument("--single-requests", type=int, default=40, help="one-at-a-time requests timed")
    bench_load.add_argument(
        "--state-dir", type=state_dir_argument, help="the server's state directory, for the in-process run"
    )
    bench_load.add_argument("--out", type=Path, required=True, help="JSON file to write")
    _add_config(bench_load)
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
    _add_config(bench_faults)
    bench_faults.set_defaults(handler=_bench_faults)

    train = commands.add_parser("train", help="learn a JSONL data set task by task, offline")
    train.add_argument("--data", type=Path, required=True, help="JSONL data set")
    train.add_argument(
        "--state-dir", type=state_dir_argument, required=True, help="where PromptState versions are written"
    )
    train.add_argument("--tasks", type=int, help="split the classes into this many tasks (without task fields)")
    _add_config(train)
    train.set_defaults(handler=_train)

    feed = commands.add_parser("feed", help="stream a JSONL data set to a running server as labelled feedback")
    feed.add_argument("path", help="JSONL data set, or - for standard input")
    feed.add_argument("--url", default="http://127.0.0.1:8000", help="the running server")
    feed.add_argument("--task", help="put every sample in this task (overrides their task fields)")
    feed.add_argument("--batch", type=int, default=32, help="samples per request")
    feed.add_argument("--labels", help="send only the samples of these classes (comma-separated)")
    feed.add_argument("--limit", type=int, help="send at most this many samples")
    feed.add_argument("--token-file", type=Path, help="file holding the bearer token (else REBQ_SERVE_TOKEN)")
    feed.set_defaults(handler=_feed)

    serve = commands.add_parser("serve", help="start a local Ray on 127.0.0.1 and serve the HTTP API")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (default 8000)")
    serve.add_argument(
        "--state-dir", type=state_dir_argument, help="where PromptState versions are read (default ./state)"
    )
    serve.add_argument("--replicas", type=int, help="number of replicas (default 1)")
    serve.add_argument(
        "--ingress",
        choices=["direct", "proxy"],
        help="direct: each replica answers HTTP on its own port, from --port up (default); proxy: Serve's proxy",
    )
    serve.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the towers run (default auto)")
    serve.add_argument("--token-file", type=Path, help="file holding the bearer token (else REBQ_SERVE_TOKEN)")
    _add_config(serve)
    serve.set_defaults(handler=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read by Ray at import: stay on loopback
    # Ray's default for a local cluster, said before Ray is imported: a driver joining one (bench faults) needs it
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from httpx import HTTPError

    from model.dataset import DatasetError
    from serving.auth import AuthError
    from serving.config import ConfigError

    try:
        return args.handler(args)
    except (AuthError, ConfigError, DatasetError, HTTPError, OSError, ValueError, TimeoutError) as error:
        log.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
