"""The HTTP layer's backend in this process: a Predictor answering one sample per batch, without Ray or an
updater (rollback needs none)."""

import asyncio

from serving.backend import BatchInfo, UpdaterUnavailable
from serving.predictor import Predictor
from updater.publishing import roll_back


class InProcessBackend:
    """One sample per batch, observations kept for the tests to read."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.observed: list[tuple[str, int, str]] = []
        self.batches = 0

    async def predict(self, sample):
        answers = await asyncio.to_thread(self.predictor.predict_batch, [sample])
        self.batches += 1
        return answers[0], BatchInfo(1, f"in-process-{self.batches}")

    def model_info(self):
        return self.predictor.model_info()

    def versions(self):
        return self.predictor.versions()

    def recent_unknown(self):
        return self.predictor.recent_unknown()

    def replica_info(self):
        return {"replica": "in-process", "node": None}

    def observe(self, route, status, pattern, seconds):
        assert seconds >= 0
        self.observed.append((route, status, pattern))

    async def feedback(self, samples):
        raise UpdaterUnavailable("no updater is running")

    async def train_task(self, name):
        raise UpdaterUnavailable("no updater is running")

    async def drop_task(self, name):
        raise UpdaterUnavailable("no updater is running")

    def rollback(self, version):
        roll_back(self.predictor.state_dir, version)

    async def updater_status(self):
        return None
