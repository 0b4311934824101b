"""The schema, as an append-only list of migrations.

Migration N (1-based) brings the database from `PRAGMA user_version` N-1 to N. Never edit a released migration;
append a new one. Each is a tuple of single statements, because the applier runs them inside one transaction
(sqlite3's executescript would commit halfway).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PerDialect:
    """A statement whose SQL differs between the databases ("" skips it on that one)."""

    sqlite: str
    postgresql: str


MigrationStatement = str | PerDialect

UNSCOPED_NOTE = "granted before scopes"  # a global grant any server's admin may have made (migration 2)

MIGRATIONS: tuple[tuple[MigrationStatement, ...], ...] = (
    # 1: the initial schema. Timestamps are fixed-width UTC text (storage.clock.encode_time).
    (
        """
        CREATE TABLE users (
            id               INTEGER PRIMARY KEY,
            platform         TEXT NOT NULL,
            platform_user_id TEXT NOT NULL,
            display_name     TEXT NOT NULL DEFAULT '',
            linked_user_id   INTEGER REFERENCES users(id) ON DELETE SET NULL,
            pro_role_held    INTEGER NOT NULL DEFAULT 0,
            pro_role_seen_at TEXT,
            created_at       TEXT NOT NULL,
            last_seen_at     TEXT NOT NULL,
            UNIQUE (platform, platform_user_id)
        )
        """,
        """
        CREATE TABLE jobs (
            id           TEXT PRIMARY KEY,
            user_id      INTEGER NOT NULL REFERENCES users(id),
            source       TEXT NOT NULL,
            status       TEXT NOT NULL
                         CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'expired')),
            created_at   TEXT NOT NULL,
            started_at   TEXT,
            finished_at  TEXT,
            delivered_at TEXT,
            expired_at   TEXT,
            error        TEXT,
            result       TEXT,
            attempts     INTEGER NOT NULL DEFAULT 0,
            delivery     TEXT
        )
        """,
        "CREATE INDEX jobs_by_status ON jobs (status, created_at)",
        "CREATE INDEX jobs_by_user ON jobs (user_id, status, created_at)",
        # One row per charged job; refunded rows stay (history) but stop counting.
        """
        CREATE TABLE quota_ledger (
            id            INTEGER PRIMARY KEY,
            user_id       INTEGER NOT NULL REFERENCES users(id),
            job_id        TEXT NOT NULL UNIQUE,
            charged_at    TEXT NOT NULL,
            refunded_at   TEXT,
            refund_reason TEXT
        )
        """,
        "CREATE INDEX quota_by_user ON quota_ledger (user_id, charged_at)",
        # History of grants; at most one is unrevoked per user (grant_pro revokes the previous one).
        """
        CREATE TABLE pro_grants (
            id         INTEGER PRIMARY KEY,
            user_id    INTEGER NOT NULL REFERENCES users(id),
            granted_by TEXT NOT NULL,
            granted_at TEXT NOT NULL,
            until      TEXT,
            revoked_at TEXT,
            note       TEXT NOT NULL DEFAULT ''
        )
        """,
        "CREATE INDEX pro_grants_by_user ON pro_grants (user_id, revoked_at)",
        """
        CREATE TABLE guild_settings (
            guild_id   TEXT NOT NULL,
            key        TEXT NOT NULL,
            value      TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (guild_id, key)
        )
        """,
        """
        CREATE TABLE link_codes (
            code       TEXT PRIMARY KEY,
            user_id    INTEGER NOT NULL REFERENCES users(id),
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            used_at    TEXT,
            used_by    INTEGER REFERENCES users(id)
        )
        """,
        "CREATE INDEX link_codes_by_user ON link_codes (user_id)",
    ),
    # 2: Pro is scoped to a Discord server (issue 11).
    (
        # A grant holds in one server (guild_id) or, NULL, everywhere. Existing grants stay global: their rows
        # never recorded the server they were made in (granted_by names only the admin), so there is nothing to
        # scope them to. At most one grant per (user, scope) is unrevoked (grant_pro revokes the previous one).
        "ALTER TABLE pro_grants ADD COLUMN guild_id TEXT",
        "CREATE INDEX pro_grants_by_scope ON pro_grants (user_id, guild_id, revoked_at)",
        # But any server's admins could grant them, strangers included: Discord-made ones are marked, and the
        # service retires those not made by an operator (DISCORD_OWNER_IDS) when it starts (retire_unscoped_grants).
        f"UPDATE pro_grants SET note = '{UNSCOPED_NOTE}' WHERE granted_by LIKE 'discord:%' AND revoked_at IS NULL",
        # A remembered Pro role now names the server it was seen in. Older sightings could come from any server
        # (a stranger's role included), so they are forgotten; the next command in the home server or a DM
        # records it again.
        "ALTER TABLE users ADD COLUMN pro_role_guild_id TEXT",
        "UPDATE users SET pro_role_held = 0, pro_role_seen_at = NULL",
    ),
    # 3: what the worker needs travels in its own column (separation_worker.contract.job_spec), not in the
    # front end's delivery data (issue 12). Jobs still waiting get a spec from what they had: a link or an
    # upload by their label, and the tier limit the service used to put into the delivery data.
    (
        "ALTER TABLE jobs ADD COLUMN spec TEXT",
        # PostgreSQL databases begin after this release: they have no older jobs to convert.
        PerDialect(sqlite="""
        UPDATE jobs SET spec = json_object(
            'version', 1,
            'source', CASE WHEN source LIKE 'http://%' OR source LIKE 'https://%' THEN 'link' ELSE 'upload' END,
            'url', CASE WHEN source LIKE 'http://%' OR source LIKE 'https://%' THEN source END,
            'max_duration_s', json_extract(delivery, '$.stembot_limits.max_duration_s')
        )
        WHERE status IN ('queued', 'running')
        """, postgresql=""),
    ),
    # 4: delivery is recorded piece by piece, under a lease (storage.deliveries, issue 12). A restarted bot
    # resumes after the last piece that went; a lease (owner + expiry) keeps two bots from sending one result,
    # and lapses by itself when its owner crashed.
    (
        """
        CREATE TABLE delivery_leases (
            job_id     TEXT PRIMARY KEY REFERENCES jobs(id),
            owner      TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE delivery_pieces (
            job_id  TEXT NOT NULL REFERENCES jobs(id),
            piece   TEXT NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'linked')),
            sent_at TEXT NOT NULL,
            PRIMARY KEY (job_id, piece)
        )
        """,
    ),
    # 5: separation modes (issue 16). A heavy mode may cost more than one song: the ledger row says how many.
    # A user may pick the mode their songs get by default (NULL: the service's default).
    (
        "ALTER TABLE quota_ledger ADD COLUMN songs INTEGER NOT NULL DEFAULT 1 CHECK (songs >= 1)",
        "ALTER TABLE users ADD COLUMN default_mode TEXT",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def statement_for(statement: MigrationStatement, dialect: str) -> str:
    """The SQL of a migration statement on `dialect` ("sqlite" | "postgresql")."""
    if isinstance(statement, PerDialect):
        return statement.postgresql if dialect == "postgresql" else statement.sqlite
    if dialect == "postgresql":
        # SQLite's rowid alias is PostgreSQL's identity column; everything else in the schema is common SQL.
        return statement.replace("INTEGER PRIMARY KEY", "INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
    return statement
