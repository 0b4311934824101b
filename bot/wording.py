"""The service's refusals and the sentences both chat platforms share, with every number from the settings.

The sentences about a song itself are in separation_worker/contract/messages.py (the worker
raises them too); the platforms' own files (bot/telegram/texts.py, bot/discord/texts.py) only
lay out their commands and cards (HTML, embeds).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.progress_text import until_text
from separation_worker.contract import messages
from separation_worker.contract.modes import MODE_NAMES, MODE_SUMMARIES

# How each separation mode is named to people.
MODE_TITLES = {"vocals": "Vocals", "karaoke": "Karaoke", "stems": "Full stems", "clean-vocals": "Clean vocals"}


def mode_title(mode: str) -> str:
    return MODE_TITLES.get(mode, mode.replace("-", " ").capitalize())


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def hours_text(hours: float) -> str:
    """24 -> "24 hours", 0.5 -> "30 minutes"."""
    if hours < 1:
        return plural(max(1, round(hours * 60)), "minute")
    return plural(round(hours), "hour") if float(hours).is_integer() else f"{hours:g} hours"


@dataclass(frozen=True)
class Wording:
    free_songs_per_day: int
    pro_songs_per_day: int
    file_ttl_hours: float
    max_input_bytes: int
    max_duration_seconds: float  # Pro's
    max_duration_free_seconds: float
    free_modes: tuple[str, ...] = ("vocals",)
    pro_modes: tuple[str, ...] = MODE_NAMES
    mode_costs: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, settings) -> Wording:
        return cls(
            settings.free_songs_per_day,
            settings.pro_songs_per_day,
            settings.file_ttl_hours,
            settings.max_input_bytes,
            settings.max_duration_seconds,
            min(settings.max_duration_free_seconds, settings.max_duration_seconds),
            settings.free_modes,
            settings.pro_modes,
            settings.mode_costs,
        )

    # -- shared fragments ----------------------------------------------------------------------

    @property
    def kept_for(self) -> str:
        return hours_text(self.file_ttl_hours)

    @property
    def pro_offer(self) -> str:
        return f"Pro members get {plural(self.pro_songs_per_day, 'song')} a day."

    # -- refusals ------------------------------------------------------------------------------

    def quota(self, pro: bool, limit: int, next_free_at: datetime | None, now: datetime) -> str:
        plan = "Pro" if pro else "Free"
        wait = f" Your next song frees up in {until_text(next_free_at, now)}." if next_free_at else ""
        upsell = "" if pro else f" {self.pro_offer}"
        return f"You've used your {plural(limit, 'song')} for today ({plan}).{wait}{upsell}"

    def too_large(self) -> str:
        return messages.too_large(self.max_input_bytes)

    def too_long(self, duration: float, pro: bool) -> str:
        limit = self.max_duration_seconds if pro else self.max_duration_free_seconds
        upsell = "" if pro or limit >= self.max_duration_seconds else " (longer for Pro: /pro)"
        return messages.too_long(duration, int(limit), upsell)

    def mode_songs(self, mode: str) -> int:
        return dict(self.mode_costs).get(mode, 1)

    def mode_line(self, mode: str) -> str:
        """"Karaoke: lead vocals, backing vocals, … (2 songs, Pro)" for /help and /mode."""
        notes = []
        if self.mode_songs(mode) > 1:
            notes.append(plural(self.mode_songs(mode), "song"))
        if mode not in self.free_modes:
            notes.append("Pro")
        note = f" ({', '.join(notes)})" if notes else ""
        return f"{mode_title(mode)}: {MODE_SUMMARIES[mode]}{note}"

    def unknown_mode(self, name: str) -> str:
        return f"There's no mode called “{name}”. The modes are: {', '.join(self.pro_modes)}."

    def pro_mode(self, mode: str) -> str:
        return f"{mode_title(mode)} is for Pro members. {self.pro_offer} (/pro)"

    def mode_quota(self, mode: str, remaining: int, next_free_at: datetime | None, now: datetime) -> str:
        wait = f" Enough frees up in {until_text(next_free_at, now)}." if next_free_at else ""
        return (f"{mode_title(mode)} costs {plural(self.mode_songs(mode), 'song')} and you have "
                f"{plural(remaining, 'song')} left today.{wait}")

    @staticmethod
    def mode_set(mode: str) -> str:
        return f"From now on your songs are separated as {mode_title(mode)}: {MODE_SUMMARIES[mode]}."

    @staticmethod
    def mode_changed(mode: str) -> str:
        return f"This song: {mode_title(mode)}."

    TOO_LATE_FOR_MODE = "Too late to change the mode: this song is already being separated."
    NOT_YOUR_SONG = "That isn't one of your songs."

    @staticmethod
    def queue_full(minutes: int) -> str:
        return f"I'm very busy right now. Please try again in about {minutes} min."

    @staticmethod
    def busy_user(in_flight: int) -> str:
        return f"You already have {plural(in_flight, 'song')} in progress; send the next one when it's done."

    RATE_LIMITED = "You're sending messages too fast. Please wait a minute."
    BAD_LINK = messages.NOT_A_LINK
    EMPTY_FILE = messages.EMPTY_FILE
    NOT_QUEUED = "We couldn't queue your song right now. Please try again in a minute."
    NOT_QUEUED_FAILURE = "We couldn't queue your song. Please try again."
