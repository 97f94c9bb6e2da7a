"""The updater's refusals: their HTTP status and body, and their way across Ray to the replica."""

import asyncio
import inspect
import pickle
from types import MethodType, SimpleNamespace

import pytest
from ray.exceptions import RayActorError, RayTaskError

from serving.backend import UpdaterUnavailable
from serving.deployment import RebqReplica
from serving.refusals import REFUSALS, refusal_answer
from updater import errors
from updater.errors import TaskNotBuffered, TaskTraining, TrainingBusy, VersionMissing, VersionUnservable


def test_every_refusal_has_its_own_status():
    refusals = {
        kind
        for _, kind in inspect.getmembers(errors, inspect.isclass)
        if issubclass(kind, errors.UpdaterRefusal) and kind is not errors.UpdaterRefusal
    }
    assert refusals == set(REFUSALS)


@pytest.mark.parametrize(
    ("error", "answer"),
    [
        (TaskNotBuffered("pets"), (404, "name", "name: no samples are buffered for task 'pets'")),
        (TrainingBusy("plants"), (409, None, "task plants is training; try again after it")),
        (TaskTraining("pets"), (409, "name", "name: task pets is training; drop it after")),
        (VersionMissing(7), (404, "version", "version: 7 does not exist")),
        (
            VersionUnservable(3),
            (
                409,
                "version",
                "version: 3 cannot be served: its files are missing, unreadable or corrupted "
                "(the server's log says which)",
            ),
        ),
    ],
)
def test_each_refusal_answers_its_status_field_and_detail(error, answer):
    assert refusal_answer(error) == answer
    again = pickle.loads(pickle.dumps(error))  # as it crosses Ray
    assert type(again) is type(error) and refusal_answer(again) == answer


class FailingCall:
    def __init__(self, error):
        self.error = error

    def remote(self, *args):
        async def fail():
            raise self.error

        return fail()


class FailingUpdater:
    """An updater handle whose every method fails with `error`, as Ray raises it in the caller."""

    def __init__(self, error):
        self.error = error

    def __getattr__(self, method):
        return FailingCall(self.error)


def replica_calling(error):
    """The replica's calls to the updater, on a stand-in that holds only the updater's handle."""
    replica, methods = SimpleNamespace(_updater_handle=FailingUpdater(error)), RebqReplica.func_or_class
    for name in ("_updater", "_call_updater", "feedback", "train_task", "drop_task"):
        setattr(replica, name, MethodType(getattr(methods, name), replica))
    return replica


def wrapped(cause):
    return RayTaskError("drop_task", "Traceback (most recent call last):\n  ...", cause).as_instanceof_cause()


def test_the_replica_raises_a_refusal_as_the_updater_raised_it():
    with pytest.raises(TaskNotBuffered) as raised:
        asyncio.run(replica_calling(wrapped(TaskNotBuffered("pets"))).drop_task("pets"))
    assert type(raised.value) is TaskNotBuffered  # not Ray's wrapper, whose text is a traceback
    assert str(raised.value) == "no samples are buffered for task 'pets'"


def test_other_failures_stay_what_they_were():
    with pytest.raises(RayTaskError) as raised:
        asyncio.run(replica_calling(wrapped(ValueError("a bug"))).train_task("pets"))
    assert isinstance(raised.value.cause, ValueError)
    with pytest.raises(UpdaterUnavailable, match="restarting"):
        asyncio.run(replica_calling(RayActorError()).feedback([]))
