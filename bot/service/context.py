"""What the service's parts share: the settings, storage, Redis, the clock and the wording."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from bot.wording import Wording
from storage import Clock, Database, FileStore


@dataclass(frozen=True)
class ServiceContext:
    settings: Any
    db: Database
    files: FileStore
    redis: Any
    clock: Clock
    wording: Wording
    # Names this process in delivery leases: unique per start, readable in the database.
    delivery_owner: str

    @classmethod
    def of(cls, settings, db: Database, files: FileStore, redis, clock: Clock) -> ServiceContext:
        owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        return cls(settings, db, files, redis, clock, Wording.of(settings), owner)
