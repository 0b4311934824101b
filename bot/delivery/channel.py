"""What a platform provides to deliver a job: the one thing each chat adapter implements."""

from __future__ import annotations

from typing import Protocol

from bot.requests import JobResult, StemFile
from separation_worker.contract.progress_bus import JobEvent

from .pieces import Notice, Summary


class Channel(Protocol):
    """One job's way back to its user on one platform.

    Sending methods raise `retry.Transient` for failures worth another try and `retry.Rejected` for a refusal;
    `edit_status` is best effort and never raises (a status the user deleted must not stop the delivery).
    """

    @property
    def upload_limit(self) -> int:
        """The largest file this destination accepts, in bytes."""
        ...

    def describe(self, event: JobEvent) -> str:
        """The status text for a progress event (its state may also be "uploading")."""
        ...

    def done_text(self, result: JobResult) -> str:
        """The status text once everything went."""
        ...

    async def edit_status(self, text: str) -> None: ...

    async def send_stem(self, result: JobResult, stem: StemFile) -> None: ...

    async def send_summary(self, summary: Summary) -> None: ...

    async def send_notice(self, notice: Notice) -> None: ...
