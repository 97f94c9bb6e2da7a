"""How the updater's refusals (`updater/errors.py`) answer over HTTP: each one's status and the field at fault."""

from __future__ import annotations

from updater.errors import (
    TaskNotBuffered,
    TaskTraining,
    TrainingBusy,
    UpdaterRefusal,
    VersionMissing,
    VersionUnservable,
)

REFUSALS: dict[type[UpdaterRefusal], tuple[int, str | None]] = {
    TaskNotBuffered: (404, "name"),
    TrainingBusy: (409, None),  # another task trains: the request as a whole waits
    TaskTraining: (409, "name"),
    VersionMissing: (404, "version"),
    VersionUnservable: (409, "version"),
}


def refusal_answer(error: UpdaterRefusal) -> tuple[int, str | None, str]:
    """The status, the field at fault and the detail (starting with the field's name) of `error`."""
    status, field = next((REFUSALS[kind] for kind in type(error).__mro__ if kind in REFUSALS), (409, None))
    return status, field, f"{field}: {error}" if field else str(error)
