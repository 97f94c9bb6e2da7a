"""`rebq-serve bench load`: a running server under bounded load, beside the same pipeline in-process.

The served run sends N real samples at concurrency C with a given mix of missing patterns; every
answer carries the size of the batch that computed it. The in-process run then decodes the same
bodies and computes batches of exactly those sizes with the same `Predictor`, in this process, so
`served_over_in_process` is what HTTP, Ray and the batching wait cost. Single requests are timed
both ways too: the served p50 of one complete request at a time against its in-process time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch
from pydantic import Field, field_validator
from tqdm import tqdm

from benchmarks.processes import ray_resident_mb
from benchmarks.report import aligned, write_report
from model.config import StrictModel
from model.dataset import Sample, load_jsonl
from model.modality import MISSING_PATTERNS
from serving.config import AppConfig
from serving.decode import decode_json_request
from serving.http_api import BATCH_SIZE_HEADER

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
DEFAULT_MIX = {"complete": 0.4, "text_missing": 0.3, "image_missing": 0.3}


class LoadConfig(StrictModel):
    url: str
    concurrency: int = Field(8, ge=1, le=1024)
    requests: int = Field(400, ge=1, le=100_000)
    mix: dict[str, float] = DEFAULT_MIX  # shares of each missing pattern (`model.modality.MISSING_PATTERNS`)
    data: Path
    single_requests: int = Field(40, ge=5, le=10_000)
    warmup: int = Field(16, ge=0, le=1000)
    timeout_s: float = Field(30, gt=0)
    compare_precisions: bool = False  # also time the in-process pipeline at fp32 and at int8, in turns

    @field_validator("mix")
    @classmethod
    def _known_patterns(cls, mix: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(mix) - set(MISSING_PATTERNS))
        if unknown or not mix or min(mix.values()) < 0 or sum(mix.values()) <= 0:
            raise ValueError(f"mix: {mix} must give non-negative shares of {', '.join(MISSING_PATTERNS)}")
        return mix


def parse_mix(text: str) -> dict[str, float]:
    """`complete=0.4,text_missing=0.3,image_missing=0.3` as a dict."""
    try:
        return {name.strip(): float(share) for name, share in (part.split("=") for part in text.split(","))}
    except ValueError as error:
        raise ValueError(f"--mix {text!r}: expected name=share pairs separated by commas") from error


def request_body(sample: Sample, pattern: str) -> dict:
    """A request for `sample` that leaves out what `pattern` says is missing."""
    body: dict = {"top_k": 5}
    if pattern != "image_missing":
        body["image"] = base64.b64encode(sample.image_path.read_bytes()).decode()
    if pattern != "text_missing":
        body["text"] = sample.text
    return body


def patterns_for(mix: dict[str, float], count: int, seed: int = 0) -> list[str]:
    """`count` patterns in the proportions of `mix` (largest remainder rounding), in a seeded order."""
    total = sum(mix.values())
    exact = {name: count * share / total for name, share in mix.items()}
    counts = {name: int(value) for name, value in exact.items()}
    for name in sorted(exact, key=lambda n: exact[n] - counts[n], reverse=True)[: count - sum(counts.values())]:
        counts[name] += 1
    order = [name for name, times in counts.items() for _ in range(times)]
    random.Random(seed).shuffle(order)
    return order


def build_bodies(config: LoadConfig) -> list[tuple[str, dict]]:
    samples = [s for s in load_jsonl(config.data) if s.image_path is not None and s.text]
    if not samples:
        raise ValueError(f"{config.data}: no sample has both an image and a text")
    patterns = patterns_for(config.mix, config.requests)
    return [(pattern, request_body(samples[i % len(samples)], pattern)) for i, pattern in enumerate(patterns)]


@dataclass
class Outcome:
    status: int
    seconds: float
    batch_size: int


async def _send(client: httpx.AsyncClient, url: str, body: dict) -> Outcome:
    start = time.perf_counter()
    try:
        response = await client.post(url, json=body)
        batch = int(response.headers.get(BATCH_SIZE_HEADER, "0"))
        return Outcome(response.status_code, time.perf_counter() - start, batch)
    except httpx.HTTPError as error:
        log.warning("request failed: %s", error)
        return Outcome(0, time.perf_counter() - start, 0)


async def drive(
    url: str, bodies: list[dict], concurrency: int, timeout_s: float, label: str
) -> tuple[list[Outcome], float]:
    """Send every body with `concurrency` in flight; the outcomes in order, and the wall seconds."""
    outcomes: list[Outcome | None] = [None] * len(bodies)
    queue = iter(enumerate(bodies))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with tqdm(total=len(bodies), desc=label, unit="req", leave=False) as bar:
        async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:

            async def worker() -> None:
                for index, body in queue:
                    outcomes[index] = await _send(client, url + "/v1/predict", body)
                    bar.update()

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            wall = time.perf_counter() - start
    return outcomes, wall


def percentile_ms(seconds: list[float], q: float) -> float:
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def batches_of_served_sizes(outcomes: list[Outcome]) -> list[int]:
    """The sizes of the batches the server computed: b answers said size b for each batch of size b."""
    said = Counter(outcome.batch_size for outcome in outcomes if outcome.status == 200 and outcome.batch_size)
    return [size for size, answers in sorted(said.items()) for _ in range(round(answers / size))]


def in_process_rps(predictor, bodies: list[dict], sizes: list[int], limits) -> float:
    """Decode and predict `bodies` in batches of `sizes` (cycled), in this process: requests per second."""
    start, done, index = time.perf_counter(), 0, 0
    while done < len(bodies):
        size = min(sizes[index % len(sizes)], len(bodies) - done)
        raw = [json.dumps(body).encode() for body in bodies[done : done + size]]
        predictor.predict_batch([decode_json_request(body, limits) for body in raw])
        done, index = done + size, index + 1
    return len(bodies) / (time.perf_counter() - start)


def in_process_single_ms(predictor, bodies: list[dict], limits) -> float:
    times = []
    for body in bodies:
        start = time.perf_counter()
        predictor.predict_batch([decode_json_request(json.dumps(body).encode(), limits)])
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


PRECISION_ROUNDS = 2  # each precision timed this many times, alternating, so drift in the machine hits both


def in_process_by_precision(
    app: AppConfig, loaded, bodies: list[dict], sizes: list[int], singles: list[dict]
) -> dict:
    """The in-process pipeline at fp32 and at int8 on the same published version and requests, timed in
    turns: requests per second and one request's milliseconds, each the mean over the rounds. `loaded`: the
    predictor already loaded at `app`'s precision, used for that one."""
    from serving.predictor import Predictor

    predictors = {
        precision: loaded
        if precision == app.backbone.precision
        else Predictor.load(app.with_overrides(precision=precision))
        for precision in PRECISIONS
    }
    rounds: dict[str, list[tuple[float, float]]] = {precision: [] for precision in PRECISIONS}
    limits = app.server.limits
    for _ in range(PRECISION_ROUNDS):
        for precision, predictor in predictors.items():
            in_process_single_ms(predictor, singles[:3], limits)  # warm-up
            rps = in_process_rps(predictor, bodies, sizes, limits)
            rounds[precision].append((rps, in_process_single_ms(predictor, singles, limits)))
            log.info("in-process at %s: %.1f req/s", precision, rps)
    figures = {
        precision: {
            "in_process_rps": statistics.fmean(rps for rps, _ in timed),
            "in_process_single_ms": statistics.fmean(ms for _, ms in timed),
            "rounds": [{"in_process_rps": rps, "in_process_single_ms": ms} for rps, ms in timed],
            "served_precision": predictors[precision].backbone.text.precision,  # fp32 where CUDA runs them
        }
        for precision, timed in rounds.items()
    }
    figures["int8_over_fp32"] = figures["int8"]["in_process_rps"] / figures["fp32"]["in_process_rps"]
    return figures


def run_load(config: LoadConfig, app: AppConfig) -> dict:
    from serving.predictor import Predictor

    url = config.url.rstrip("/")
    served_version = httpx.get(url + "/v1/model", timeout=config.timeout_s).json()["version"]
    if served_version == 0:
        raise ValueError(f"{url} serves no task yet: train or feed one first")
    labelled = build_bodies(config)
    bodies = [body for _, body in labelled]
    complete = [body for pattern, body in labelled if pattern == "complete"] or bodies
    singles = [complete[i % len(complete)] for i in range(config.single_requests)]
    if config.warmup:
        asyncio.run(drive(url, bodies[: config.warmup], config.concurrency, config.timeout_s, "warm-up"))
    outcomes, wall = asyncio.run(drive(url, bodies, config.concurrency, config.timeout_s, "served"))
    single_outcomes, _ = asyncio.run(drive(url, singles, 1, config.timeout_s, "served, one at a time"))
    ok = [outcome.seconds for outcome in outcomes if outcome.status == 200]
    sizes = batches_of_served_sizes(outcomes) or [1]
    local_server = httpx.URL(url).host in ("127.0.0.1", "localhost")
    server_rss = ray_resident_mb() if local_server else None

    torch.set_num_threads(max(1, int(app.server.cpus_per_replica)))  # as Ray sets a replica's
    predictor = Predictor.load(app)
    if predictor.version != served_version:
        log.warning("in-process version %d differs from the served %d", predictor.version, served_version)
    limits = app.server.limits
    in_process_single_ms(predictor, singles[:3], limits)  # warm-up
    local_rps = in_process_rps(predictor, bodies, sizes, limits)
    local_single = in_process_single_ms(predictor, singles, limits)
    throughput = len(ok) / wall
    single_p50 = statistics.median(o.seconds for o in single_outcomes if o.status == 200) * 1000
    by_pattern = Counter(pattern for pattern, _ in labelled)
    precisions = (
        in_process_by_precision(app, predictor, bodies, sizes, singles) if config.compare_precisions else None
    )
    return {
        "throughput_rps": throughput,
        "p50_ms": percentile_ms(ok, 50) if ok else None,
        "p95_ms": percentile_ms(ok, 95) if ok else None,
        "p99_ms": percentile_ms(ok, 99) if ok else None,
        "errors": sum(outcome.status != 200 for outcome in outcomes + single_outcomes),
        "in_process_rps": local_rps,
        "served_over_in_process": throughput / local_rps,
        "single_p50_ms": single_p50,
        "in_process_single_ms": local_single,
        "single_over_in_process": single_p50 / local_single,
        "mean_batch_size": statistics.fmean(sizes),
        "server_rss_mb": server_rss,
        "model_version": served_version,
        "precisions": precisions,
        "config": {**json.loads(config.model_dump_json()), "requests_by_pattern": dict(by_pattern)},
    }


def format_report(result: dict) -> str:
    r = result
    rows = [
        ("throughput", f"{r['throughput_rps']:.1f} req/s served, {r['in_process_rps']:.1f} in-process"),
        ("served / in-process", f"{r['served_over_in_process']:.2f}"),
        ("latency", f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"),
        (
            "one request",
            f"{r['single_p50_ms']:.1f} ms served, {r['in_process_single_ms']:.1f} ms in-process"
            f" ({r['single_over_in_process']:.2f}x)",
        ),
        ("mean batch", f"{r['mean_batch_size']:.1f}"),
        ("errors", str(r["errors"])),
    ]
    if r.get("server_rss_mb") is not None:
        rows.append(("server memory", f"{r['server_rss_mb']:.0f} MiB resident (all Ray processes)"))
    if r.get("precisions"):
        for precision in PRECISIONS:
            figures = r["precisions"][precision]
            rows.append(
                (
                    f"in-process {precision}",
                    f"{figures['in_process_rps']:.1f} req/s, one request {figures['in_process_single_ms']:.1f} ms",
                )
            )
        rows.append(("int8 / fp32", f"{r['precisions']['int8_over_fp32']:.2f}x in-process throughput"))
    return aligned(rows)


def main(config: LoadConfig, app: AppConfig, out: Path) -> dict:
    result = run_load(config, app)
    write_report(out, result)
    return result
