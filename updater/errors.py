"""What the updater refuses, as exceptions: each holds the one value it is about, so it crosses Ray intact.

Their messages are plain words for a client; the HTTP layer (`serving/refusals.py`) gives each its status.
"""

from __future__ import annotations


class UpdaterRefusal(Exception):
    """A request the updater refuses; `str()` says why in plain words."""

    def __init__(self, subject: str | int):
        super().__init__(subject)  # the only argument, so that unpickling (across Ray) builds it again
        self.subject = subject


class TaskNotBuffered(UpdaterRefusal):
    """No sample is buffered for the task named."""

    def __str__(self) -> str:
        return f"no samples are buffered for task {self.subject!r}"


class TrainingBusy(UpdaterRefusal):
    """A task (the subject) is training, so another cannot start."""

    def __str__(self) -> str:
        return f"task {self.subject} is training; try again after it"


class TaskTraining(UpdaterRefusal):
    """The task named is training, so it cannot be dropped."""

    def __str__(self) -> str:
        return f"task {self.subject} is training; drop it after"


class VersionMissing(UpdaterRefusal):
    """No PromptState version has this number."""

    def __str__(self) -> str:
        return f"{self.subject} does not exist"


class VersionUnservable(UpdaterRefusal):
    """The version's files are missing, unreadable or corrupted (the log names which)."""

    def __str__(self) -> str:
        return (
            f"{self.subject} cannot be served: its files are missing, unreadable or corrupted "
            "(the server's log says which)"
        )
