"""`rebq-serve`: the command line. Each sub-command imports what it needs when it runs.

`serve`, `train` and `feed` are here; packages above this one add theirs through the
`rebq_serve.commands` entry points (`bench` comes from `benchmarks/cli.py`), so that nothing here
imports them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

log = logging.getLogger("rebq_serve")
COMMAND_GROUPS = "rebq_serve.commands"  # entry points adding sub-commands: `bench` (benchmarks/cli.py)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML or JSON configuration file (see README)")


def add_precision_argument(parser: argparse.ArgumentParser, what: str = "of the ONNX towers on the CPU") -> None:
    parser.add_argument(
        "--precision",
        choices=["fp32", "int8"],
        help=f"{what} (default: the configuration's, fp32; CUDA keeps fp32)",
    )


def state_dir_argument(text: str) -> Path:
    """`--state-dir`: a path or a file:// URI, as `server.state_dir` takes it."""
    from serving.config import state_path

    try:
        return state_path(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


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


def _train(args: argparse.Namespace) -> int:
    from serving.config import load_config
    from updater.offline import train_offline

    app = load_config(args.config).with_overrides(precision=args.precision)
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
        precision=args.precision,
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
    parser = argparse.ArgumentParser(prog="rebq-serve", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in entry_points(group=COMMAND_GROUPS):  # `bench`, from the benchmarks package
        group.load()(commands)

    train = commands.add_parser("train", help="learn a JSONL data set task by task, offline")
    train.add_argument("--data", type=Path, required=True, help="JSONL data set")
    train.add_argument(
        "--state-dir", type=state_dir_argument, required=True, help="where PromptState versions are written"
    )
    train.add_argument("--tasks", type=int, help="split the classes into this many tasks (without task fields)")
    add_config_argument(train)
    add_precision_argument(train, "of the towers versions are calibrated on, as replicas will serve them")
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
    add_precision_argument(serve)
    serve.add_argument("--token-file", type=Path, help="file holding the bearer token (else REBQ_SERVE_TOKEN)")
    add_config_argument(serve)
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
