"""StemBot's storage: the record of truth (users, jobs, quota, Pro, links, guild settings) and the file store.

Usage: `db = await Database.for_settings(settings)` (SQLite in the data folder, or STEMBOT_DATABASE_URL's
PostgreSQL; `Database.open(path, clock=...)` for an SQLite file), then the async functions below, each taking `db`
first; `FileStore.for_settings(settings)` for files (local, or over STEMBOT_STORAGE_URL's bucket). Every write runs
alone among writers, so any number of processes may share the database.
"""

from storage.clock import UTC, Clock, FakeClock, SystemClock
from storage.database import DATABASE_FILENAME, Database
from storage.deliveries import (
    PieceOutcome,
    claim_delivery,
    complete_delivery,
    list_claimable,
    record_piece,
    recorded_pieces,
    release_delivery,
    renew_delivery,
)
from storage.errors import (
    DuplicateJob,
    InvalidName,
    InvalidTransition,
    LinkCodeError,
    LinkFailure,
    NotFound,
    SchemaTooNew,
    StorageError,
)
from storage.files import INCOMING, FileStore, JobDir, safe_filename
from storage.grants import (
    PRO_ROLE_FRESHNESS,
    ProReason,
    active_grant,
    grant_pro,
    is_pro,
    list_active_grants,
    list_grants,
    pro_reason,
    record_pro_role,
    retire_unscoped_grants,
    revoke_pro,
)
from storage.guilds import PRO_ROLE_ID, get_guild_setting, guild_settings, set_guild_setting
from storage.janitor import SweepReport, sweep
from storage.jobs import (
    accept_job,
    cancel_job,
    change_queued_spec,
    create_job,
    fail_job,
    finish_job,
    get_job,
    get_queued_job,
    list_jobs,
    list_undelivered,
    list_user_jobs,
    mark_delivered,
    requeue_job,
    set_delivery,
    start_job,
    store_result,
    transition,
)
from storage.links import DEFAULT_CODE_TTL, create_link_code, linked_account, redeem_link_code, unlink
from storage.models import (
    PLATFORMS,
    Acceptance,
    Job,
    JobStatus,
    LinkCode,
    ProGrant,
    QuotaDecision,
    SpecChange,
    User,
    validate_job_id,
)
from storage.quota import DEFAULT_WINDOW, quota_status, refund, try_charge
from storage.users import find_user, get_or_create_user, get_user, set_default_mode

__all__ = [
    "DATABASE_FILENAME", "DEFAULT_CODE_TTL", "DEFAULT_WINDOW", "PLATFORMS", "PRO_ROLE_FRESHNESS", "PRO_ROLE_ID", "UTC",
    "Acceptance", "Clock", "Database", "DuplicateJob", "FakeClock", "FileStore", "INCOMING", "InvalidName", "InvalidTransition",
    "Job", "JobDir", "JobStatus", "LinkCode", "LinkCodeError", "LinkFailure", "NotFound", "ProGrant", "ProReason",
    "PieceOutcome", "QuotaDecision", "SchemaTooNew", "StorageError", "SweepReport", "SystemClock", "User",
    "accept_job", "change_queued_spec", "set_default_mode", "SpecChange", "active_grant", "cancel_job", "claim_delivery", "complete_delivery", "list_claimable",
    "record_piece", "recorded_pieces", "release_delivery", "renew_delivery", "create_job", "create_link_code", "fail_job", "find_user",
    "finish_job", "get_guild_setting", "get_job", "get_or_create_user", "get_queued_job", "get_user",
    "grant_pro", "guild_settings", "is_pro", "linked_account", "list_active_grants", "list_grants", "retire_unscoped_grants", "list_jobs",
    "list_undelivered", "list_user_jobs", "mark_delivered", "pro_reason", "quota_status", "record_pro_role",
    "redeem_link_code", "refund", "requeue_job", "revoke_pro", "safe_filename", "set_delivery",
    "set_guild_setting", "start_job", "store_result", "sweep", "transition", "try_charge", "unlink",
    "validate_job_id",
]
