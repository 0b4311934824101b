"""Platform-neutral wording of job progress and results (the chat adapters add their own markup)."""

from __future__ import annotations

from datetime import datetime

from separation_worker.contract.manifest import stem_label
from separation_worker.contract.progress_bus import JobEvent

UPLOADING = "📤 Uploading the stems…"


def describe(event: JobEvent) -> str:
    """One status line for a progress event, e.g. "Separating… 45 %"."""
    percent = f" {round(event.fraction * 100)} %" if 0 < event.fraction < 1 else ""
    if event.state == "queued":
        return f"⏳ In the queue: #{event.position}" if event.position else "⏳ Waiting for a free worker…"
    return {
        "downloading": "⬇️ Getting your audio…",
        "separating": f"🎛 Separating the stems…{percent}",
        "analyzing": "🎼 Analyzing BPM and key…",
        "encoding": "📦 Encoding the stems…",
        "uploading": UPLOADING,
        "done": "✅ Done!",
        "failed": f"❌ {event.message or 'Something went wrong.'}",
        "cancelled": "🚫 Cancelled. Your quota was not charged.",
        "expired": "⌛ This job's files have expired.",
    }.get(event.state, event.state)


def upload_failed_note(stem_names: list[str]) -> str:
    """Said with the summary when uploading stems kept failing and links stand in for them."""
    names = " and ".join(stem_label(name) for name in stem_names)
    return f"⚠️ Sending {names} here kept failing, so use the download links instead."


def until_text(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "now"
    minutes = max(1, int((when - now).total_seconds() // 60) + 1)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
