"""What a result is delivered as: an ordered list of pieces, each sent and recorded on its own.

Each stem that fits the platform's upload limit, then the summary, which links every stem not attached (too
large for the platform, or its upload kept failing). A failed or expired job is one piece: its notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.requests import JobResult, StemFile
from storage import PieceOutcome

SUMMARY = "summary"
NOTICE = "notice"  # a failure, or files that expired before they could be sent


def stem_key(stem: StemFile) -> str:
    return f"stem:{stem.name}"


@dataclass(frozen=True)
class StemPiece:
    stem: StemFile

    @property
    def key(self) -> str:
        return stem_key(self.stem)


@dataclass(frozen=True)
class Summary:
    """The last piece: tempo, key, the results page, and links for the stems not attached."""

    result: JobResult
    too_big: tuple[StemFile, ...]  # over the platform's upload limit
    failed: tuple[StemFile, ...]  # the upload kept failing: links instead, and the summary says so

    @property
    def linked(self) -> tuple[StemFile, ...]:
        return self.too_big + self.failed


@dataclass(frozen=True)
class Notice:
    """A job that has no stems to send: it failed (`reason`), or its files expired first."""

    source: str
    reason: str | None
    expired: bool = False


def stem_pieces(result: JobResult, upload_limit: int) -> list[StemPiece]:
    """The stems to upload, in the result's order."""
    return [StemPiece(stem) for stem in result.stems if stem.size_bytes <= upload_limit]


def summary_for(result: JobResult, upload_limit: int, record: Mapping[str, PieceOutcome]) -> Summary:
    too_big = tuple(s for s in result.stems if s.size_bytes > upload_limit)
    failed = tuple(s for s in result.stems if record.get(stem_key(s)) is PieceOutcome.LINKED)
    return Summary(result, too_big, failed)
