"""A local stand-in for Discord: REST API, gateway and CDN on 127.0.0.1, for the real discord.py client.

It keeps a small world (users, guilds with roles, channels and members), speaks the gateway handshake
(HELLO → IDENTIFY → READY + GUILD_CREATE), dispatches INTERACTION_CREATE frames built like Discord's, and
records what the bot sends: interaction callbacks, edits of the original response, followups (with uploaded
files), channel messages and DMs, role changes, synced commands.

Usage: `fake = FakeDiscord(); await fake.start()`; point the bot at `fake.api_url` and `fake.gateway_url`;
`interaction = await fake.slash("quota", user=alice, guild=guild, channel=channel_id)`, then
`await fake.wait_for(lambda: interaction.responded)`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import WSMsgType, web

DISCORD_EPOCH_MS = 1420070400000
EPHEMERAL = 1 << 6
MANAGE_GUILD = 1 << 5
MANAGE_ROLES = 1 << 28
ADMINISTRATOR = 1 << 3
SEND_MESSAGES = 1 << 11
BASIC_PERMISSIONS = (1 << 10) | SEND_MESSAGES | (1 << 15) | (1 << 16)  # view, send, attach files, read history
ALL_PERMISSIONS = (1 << 53) - 1

# Option types of application commands.
STRING, INTEGER, USER, ROLE, NUMBER, ATTACHMENT = 3, 4, 6, 8, 10, 11


@dataclass
class User:
    id: int
    username: str
    bot: bool = False

    def payload(self) -> dict:
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": self.bot,
        }


@dataclass
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 1

    def payload(self) -> dict:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class Attachment:
    id: int
    filename: str
    size: int
    url: str
    content_type: str

    def payload(self) -> dict:
        return {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, dict] = field(default_factory=dict)
    members: dict[int, list[int]] = field(default_factory=dict)  # user id -> role ids

    def permissions(self, user_id: int) -> int:
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        value = self.roles[self.id].permissions
        for role_id in self.members.get(user_id, []):
            value |= self.roles[role_id].permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value


@dataclass
class Sent:
    """One request through which the bot said something."""

    method: str
    path: str
    payload: dict
    files: list[tuple[str, bytes]]
    at: float = field(default_factory=time.monotonic)

    @property
    def content(self) -> str:
        return self.payload.get("content") or ""

    @property
    def embeds(self) -> list[dict]:
        return self.payload.get("embeds") or []

    @property
    def flags(self) -> int:
        return int(self.payload.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    def text(self) -> str:
        """Content and embeds together, for assertions on what the user reads."""
        return self.content + "\n" + json.dumps(self.embeds, ensure_ascii=False)


@dataclass
class Interaction:
    id: int
    token: str
    payload: dict
    callbacks: list[dict] = field(default_factory=list)  # {"type": 5} etc.
    edits: list[Sent] = field(default_factory=list)  # PATCH .../messages/@original
    followups: list[Sent] = field(default_factory=list)
    deleted: bool = False  # the original response was deleted

    @property
    def responded(self) -> bool:
        return bool(self.callbacks)

    @property
    def callback(self) -> dict:
        return self.callbacks[0]

    @property
    def deferred(self) -> bool:
        return bool(self.callbacks) and self.callbacks[0]["type"] == 5

    def replies(self) -> list[Sent]:
        """The callback's message (if it carried one) and every followup, in order."""
        first = [Sent("POST", "callback", c.get("data") or {}, []) for c in self.callbacks if c["type"] == 4]
        return first + self.followups


class FakeDiscord:
    def __init__(self, token: str = "fake-bot-token", host: str = "127.0.0.1"):
        self.token = token
        self._host = host
        self._ids = itertools.count(1)
        self.application_id = self.snowflake()
        self.bot_user = User(self.application_id, "StemBot", bot=True)
        self.users: dict[int, User] = {self.bot_user.id: self.bot_user}
        self.guilds: dict[int, Guild] = {}
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self.interactions: dict[str, Interaction] = {}
        self.messages: list[tuple[int, Sent]] = []  # (channel id, message) for channel messages and DMs
        self.role_changes: list[tuple[str, int, int, int]] = []  # (PUT|DELETE, guild, user, role)
        self.commands: dict[int | None, list[dict]] = {}  # synced commands by guild (None: global)
        self.expired_tokens: set[str] = set()
        self.identifies = 0
        self.refused: list[tuple[str, int]] = []  # (kind, status) of every injected failure answered
        self._failures: dict[str, list[tuple[int, float | None]]] = {}  # kind -> (status, retry_after) queue
        self._files: dict[str, tuple[bytes, str]] = {}
        self._socket: web.WebSocketResponse | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._seq = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        api = "/api/v10"
        app.router.add_get(f"{api}/users/@me", self._me)
        app.router.add_get(f"{api}/oauth2/applications/@me", self._application)
        app.router.add_put(f"{api}/applications/{{app}}/commands", self._sync_commands)
        app.router.add_put(f"{api}/applications/{{app}}/guilds/{{guild}}/commands", self._sync_commands)
        app.router.add_post(f"{api}/interactions/{{id}}/{{token}}/callback", self._callback)
        app.router.add_patch(f"{api}/webhooks/{{app}}/{{token}}/messages/@original", self._edit_original)
        app.router.add_delete(f"{api}/webhooks/{{app}}/{{token}}/messages/@original", self._delete_original)
        app.router.add_post(f"{api}/webhooks/{{app}}/{{token}}", self._followup)
        app.router.add_get(f"{api}/channels/{{channel}}", self._get_channel)
        app.router.add_post(f"{api}/channels/{{channel}}/messages", self._channel_message)
        app.router.add_post(f"{api}/users/@me/channels", self._open_dm)
        app.router.add_get(f"{api}/users/{{user}}", self._get_user)
        app.router.add_get(f"{api}/guilds/{{guild}}/members/{{user}}", self._get_member)
        app.router.add_put(f"{api}/guilds/{{guild}}/members/{{user}}/roles/{{role}}", self._member_role)
        app.router.add_delete(f"{api}/guilds/{{guild}}/members/{{user}}/roles/{{role}}", self._member_role)
        app.router.add_get("/cdn/{name}", self._cdn)
        app.router.add_get("/gateway", self._gateway)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://{self._host}:{port}"
        return self

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self._host}:{self.base_url.rsplit(':', 1)[1]}/gateway"

    def settings_env(self) -> dict[str, str]:
        return {
            "DISCORD_BOT_TOKEN": self.token,
            "DISCORD_API_BASE_URL": self.api_url,
            "DISCORD_GATEWAY_URL": self.gateway_url,
        }

    # -- the world ----------------------------------------------------------------------------------

    def snowflake(self) -> int:
        """Ids carry their creation time like Discord's (discord.py reads an interaction's age from its id)."""
        return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(self._ids) & 0x3FFFFF)

    def add_user(self, username: str) -> User:
        user = User(self.snowflake(), username)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str, owner: User, bot_permissions: int = BASIC_PERMISSIONS) -> Guild:
        """A guild with @everyone, a role for the bot (position 2), one text channel, and the bot as a member."""
        guild = Guild(self.snowflake(), name, owner.id)
        guild.roles[guild.id] = Role(guild.id, guild.id, "@everyone", BASIC_PERMISSIONS, position=0)
        bot_role = self.add_role(guild, "StemBot", bot_permissions, position=2)
        self.add_channel(guild, "general")
        guild.members[owner.id] = []
        guild.members[self.bot_user.id] = [bot_role.id]
        self.guilds[guild.id] = guild
        return guild

    def add_role(self, guild: Guild, name: str, permissions: int = 0, position: int = 1) -> Role:
        role = Role(self.snowflake(), guild.id, name, permissions, position)
        guild.roles[role.id] = role
        return role

    def add_channel(self, guild: Guild, name: str) -> int:
        channel_id = self.snowflake()
        guild.channels[channel_id] = {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(guild.id),
            "name": name,
            "position": len(guild.channels),
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
        }
        return channel_id

    def channel_of(self, guild: Guild) -> int:
        return next(iter(guild.channels))

    def delete_channel(self, guild: Guild, channel_id: int) -> None:
        guild.channels.pop(channel_id)

    def join(self, guild: Guild, user: User, *roles: Role) -> None:
        guild.members[user.id] = [r.id for r in roles]

    def host(self, filename: str, data: bytes, content_type: str = "audio/mpeg") -> Attachment:
        """Serve `data` on the fake CDN, as a user's upload would be."""
        attachment_id = self.snowflake()
        name = f"{attachment_id}-{filename}"
        self._files[name] = (data, content_type)
        return Attachment(attachment_id, filename, len(data), f"{self.base_url}/cdn/{name}", content_type)

    def expire(self, interaction: Interaction) -> None:
        """From now on Discord refuses this interaction's token (as 15 minutes after the command)."""
        self.expired_tokens.add(interaction.token)

    def fail_next(self, kind: str, status: int, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `times` posts of `kind` ("followup" or "message": channel messages and DMs) with
        `status` without keeping them: 429 as Discord's rate limiter does (JSON retry_after and the Via header
        discord.py checks to tell it from a Cloudflare ban), 5xx as a gateway error."""
        self._failures.setdefault(kind, []).extend([(status, retry_after)] * times)

    def _injected(self, kind: str) -> web.Response | None:
        queue = self._failures.get(kind)
        if not queue:
            return None
        status, retry_after = queue.pop(0)
        self.refused.append((kind, status))
        if status == 429:
            wait = 1.0 if retry_after is None else retry_after
            body = {"message": "You are being rate limited.", "retry_after": wait, "global": False}
            headers = {"Content-Type": "application/json", "Via": "1.1 google", "Retry-After": str(wait),
                       "X-RateLimit-Scope": "user"}
            return web.Response(status=429, body=json.dumps(body).encode(), headers=headers)
        return web.Response(status=status, text="<html>Bad Gateway</html>", content_type="text/html")

    def channel_messages(self, channel_id: int | None = None) -> list[Sent]:
        return [m for c, m in self.messages if channel_id is None or c == channel_id]

    def dms(self, user: User) -> list[Sent]:
        channel_id = self.dm_channels.get(user.id)
        return [] if channel_id is None else self.channel_messages(channel_id)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Wait until `predicate()` is truthy (checked whenever the bot sends something); return its value."""

        async def wait() -> Any:
            async with self._changed:
                while not (value := predicate()):
                    await self._changed.wait()
                return value

        return await asyncio.wait_for(wait(), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- interactions ---------------------------------------------------------------------------------

    async def slash(
        self,
        name: str,
        user: User,
        guild: Guild | None = None,
        channel: int | None = None,
        options: dict[str, Any] | None = None,
        subcommand: str | None = None,
        attachment_size_limit: int = 10 * 1024 * 1024,
    ) -> Interaction:
        """Dispatch a slash command as `user` (in `guild`'s `channel`, or in a DM without a guild)."""
        resolved: dict[str, dict] = {}
        built = [self._option(key, value, guild, resolved) for key, value in (options or {}).items()]
        if subcommand is not None:
            built = [{"name": subcommand, "type": 1, "options": built}]
        data: dict[str, Any] = {"id": str(self._command_id(name, guild)), "name": name, "type": 1, "options": built}
        if resolved:
            data["resolved"] = resolved
        if guild is not None and self.commands.get(guild.id):
            data["guild_id"] = str(guild.id)
        return await self._interact(data, user, guild, channel, attachment_size_limit)

    async def message_command(
        self,
        name: str,
        user: User,
        message: dict,
        guild: Guild | None = None,
        channel: int | None = None,
        attachment_size_limit: int = 10 * 1024 * 1024,
    ) -> Interaction:
        """Dispatch a message context-menu command on `message` (see `message()`)."""
        data: dict[str, Any] = {
            "id": str(self._command_id(name, guild)),
            "name": name,
            "type": 3,
            "target_id": message["id"],
            "resolved": {"messages": {message["id"]: message}},
        }
        if guild is not None and self.commands.get(guild.id):
            data["guild_id"] = str(guild.id)
        return await self._interact(data, user, guild, channel, attachment_size_limit)

    def message(self, author: User, channel_id: int, content: str = "", attachments: list[Attachment] = ()) -> dict:
        """A message as Discord would include it in a context-menu interaction."""
        return self._message_payload(
            channel_id, author, {"content": content}, [], attachments=[a.payload() for a in attachments]
        )

    async def _interact(
        self, data: dict, user: User, guild: Guild | None, channel: int | None, size_limit: int
    ) -> Interaction:
        interaction_id = self.snowflake()
        token = "itoken-" + secrets.token_urlsafe(24)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": 2,
            "token": token,
            "version": 1,
            "data": data,
            "locale": "en-US",
            "attachment_size_limit": size_limit,
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id) if guild else "0"},
        }
        if guild is not None:
            channel_id = channel or self.channel_of(guild)
            payload.update(
                guild_id=str(guild.id),
                channel_id=str(channel_id),
                channel=guild.channels.get(channel_id, {"id": str(channel_id), "type": 0}),
                member=self._member_payload(guild, user, with_permissions=True),
                guild_locale="en-US",
                app_permissions=str(guild.permissions(self.bot_user.id)),
                context=0,
                guild={"id": str(guild.id), "locale": "en-US", "features": []},
            )
        else:
            channel_id = self._dm_channel(user.id)
            payload.update(
                channel_id=str(channel_id),
                user=user.payload(),
                context=1,
                channel={"id": str(channel_id), "type": 1, "recipients": [user.payload()]},
                app_permissions=str(BASIC_PERMISSIONS),
            )
        interaction = Interaction(interaction_id, token, payload)
        self.interactions[token] = interaction
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction

    def _option(self, name: str, value: Any, guild: Guild | None, resolved: dict[str, dict]) -> dict:
        if isinstance(value, User):
            resolved.setdefault("users", {})[str(value.id)] = value.payload()
            if guild is not None and value.id in guild.members:
                member = self._member_payload(guild, value, with_permissions=True)
                member.pop("user")
                resolved.setdefault("members", {})[str(value.id)] = member
            return {"name": name, "type": USER, "value": str(value.id)}
        if isinstance(value, Role):
            resolved.setdefault("roles", {})[str(value.id)] = value.payload()
            return {"name": name, "type": ROLE, "value": str(value.id)}
        if isinstance(value, Attachment):
            resolved.setdefault("attachments", {})[str(value.id)] = value.payload()
            return {"name": name, "type": ATTACHMENT, "value": str(value.id)}
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"unsupported option value {value!r}")
        kind = STRING if isinstance(value, str) else INTEGER if isinstance(value, int) else NUMBER
        return {"name": name, "type": kind, "value": value}

    def _command_id(self, name: str, guild: Guild | None) -> int:
        for command in self.commands.get(guild.id if guild else None, []) + self.commands.get(None, []):
            if command["name"] == name:
                return int(command["id"])
        return self.snowflake()

    # -- gateway ------------------------------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict) -> None:
        if self._socket is None or self._socket.closed:
            raise RuntimeError("no bot is connected to the fake gateway")
        self._seq += 1
        await self._socket.send_str(json.dumps({"op": 0, "t": event, "s": self._seq, "d": data}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                if frame["op"] == 1:  # heartbeat
                    await ws.send_str(json.dumps({"op": 11}))
                elif frame["op"] == 2:  # identify
                    if frame["d"].get("token") != self.token:
                        await ws.close(code=4004, message=b"Authentication failed.")
                        break
                    self.identifies += 1
                    self._socket = ws
                    await self._ready()
                    await self._notify()
                elif frame["op"] == 6:  # resume: not supported, start a new session
                    await ws.send_str(json.dumps({"op": 9, "d": False}))
        finally:
            self._sockets.discard(ws)
            if self._socket is ws:
                self._socket = None
        return ws

    async def _ready(self) -> None:
        await self.dispatch(
            "READY",
            {
                "v": 10,
                "user": {**self.bot_user.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
                "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
                "session_id": secrets.token_hex(16),
                "resume_gateway_url": self.gateway_url,
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
            },
        )
        for guild in self.guilds.values():
            await self.dispatch("GUILD_CREATE", self._guild_payload(guild))

    def _guild_payload(self, guild: Guild) -> dict:
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "owner_id": str(guild.owner_id),
            "roles": [r.payload() for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "channels": list(guild.channels.values()),
            "threads": [],
            "members": [self._member_payload(guild, self.users[uid]) for uid in guild.members],
            "member_count": len(guild.members),
            "large": False,
            "unavailable": False,
            "premium_tier": 0,
            "joined_at": _now_iso(),
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _member_payload(self, guild: Guild, user: User, with_permissions: bool = False) -> dict:
        member = {
            "user": user.payload(),
            "roles": [str(r) for r in guild.members.get(user.id, [])],
            "joined_at": _now_iso(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
        }
        if with_permissions:
            member["permissions"] = str(guild.permissions(user.id))
        return member

    # -- REST ---------------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.token}"

    async def _me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, 0, "401: Unauthorized")
        return _json({**self.bot_user.payload(), "verified": True, "mfa_enabled": False, "flags": 0})

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": str(self.application_id),
                "name": "StemBot",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.users[self.bot_user.id].payload(),
                "verify_key": "0" * 64,
                "flags": 0,
                "team": None,
                "summary": "",
                "rpc_origins": [],
            }
        )

    async def _sync_commands(self, request: web.Request) -> web.Response:
        guild = request.match_info.get("guild")
        commands = []
        for command in await request.json():
            commands.append(
                {
                    "description": "",
                    "options": [],
                    **command,
                    "id": str(self.snowflake()),
                    "application_id": str(self.application_id),
                    "version": "1",
                    **({"guild_id": guild} if guild else {}),
                }
            )
        self.commands[int(guild) if guild else None] = commands
        return _json(commands)

    async def _callback(self, request: web.Request) -> web.Response:
        interaction = self.interactions.get(request.match_info["token"])
        if (
            interaction is None
            or str(interaction.id) != request.match_info["id"]
            or interaction.token in self.expired_tokens
        ):
            return _error(404, 10062, "Unknown interaction")
        if interaction.callbacks:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        payload, files = await _read_body(request)
        interaction.callbacks.append(payload)
        data = payload.get("data") or {}
        message = self._message_payload(int(interaction.payload["channel_id"]), self.bot_user, data, files)
        await self._notify()
        return _json(
            {
                "interaction": {
                    "id": str(interaction.id),
                    "type": 2,
                    "response_message_id": message["id"],
                    "response_message_loading": payload["type"] == 5,
                    "response_message_ephemeral": bool(int(data.get("flags") or 0) & EPHEMERAL),
                },
                "resource": {"type": payload["type"], "message": message},
            }
        )

    def _webhook(self, request: web.Request) -> Interaction | web.Response:
        interaction = self.interactions.get(request.match_info["token"])
        if interaction is None or request.match_info["app"] != str(self.application_id):
            return _error(404, 10015, "Unknown Webhook")
        if interaction.token in self.expired_tokens:
            return _error(401, 50027, "Invalid Webhook Token")
        if not interaction.callbacks:
            return _error(404, 10008, "Unknown Message")
        return interaction

    async def _edit_original(self, request: web.Request) -> web.Response:
        interaction = self._webhook(request)
        if isinstance(interaction, web.Response):
            return interaction
        if interaction.deleted:
            return _error(404, 10008, "Unknown Message")
        payload, files = await _read_body(request)
        interaction.edits.append(Sent("PATCH", request.path, payload, files))
        await self._notify()
        return _json(self._message_payload(int(interaction.payload["channel_id"]), self.bot_user, payload, files))

    async def _delete_original(self, request: web.Request) -> web.Response:
        interaction = self._webhook(request)
        if isinstance(interaction, web.Response):
            return interaction
        interaction.deleted = True
        await self._notify()
        return web.Response(status=204)

    async def _followup(self, request: web.Request) -> web.Response:
        interaction = self._webhook(request)
        if isinstance(interaction, web.Response):
            return interaction
        payload, files = await _read_body(request)
        if (refusal := self._injected("followup")) is not None:
            await self._notify()
            return refusal
        interaction.followups.append(Sent("POST", request.path, payload, files))
        await self._notify()
        return _json(self._message_payload(int(interaction.payload["channel_id"]), self.bot_user, payload, files))

    def _find_channel(self, channel_id: int) -> dict | None:
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild.channels[channel_id]
        for user_id, dm in self.dm_channels.items():
            if dm == channel_id:
                return {
                    "id": str(dm),
                    "type": 1,
                    "recipients": [self.users[user_id].payload()],
                    "last_message_id": None,
                }
        return None

    async def _get_channel(self, request: web.Request) -> web.Response:
        channel = self._find_channel(int(request.match_info["channel"]))
        return _json(channel) if channel is not None else _error(404, 10003, "Unknown Channel")

    async def _channel_message(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, 0, "401: Unauthorized")
        channel_id = int(request.match_info["channel"])
        if self._find_channel(channel_id) is None:
            return _error(404, 10003, "Unknown Channel")
        payload, files = await _read_body(request)
        if (refusal := self._injected("message")) is not None:
            await self._notify()
            return refusal
        self.messages.append((channel_id, Sent("POST", request.path, payload, files)))
        await self._notify()
        return _json(self._message_payload(channel_id, self.bot_user, payload, files))

    def _dm_channel(self, user_id: int) -> int:
        if user_id not in self.dm_channels:
            self.dm_channels[user_id] = self.snowflake()
        return self.dm_channels[user_id]

    async def _open_dm(self, request: web.Request) -> web.Response:
        user_id = int((await request.json())["recipient_id"])
        if user_id not in self.users:
            return _error(404, 10013, "Unknown User")
        channel_id = self._dm_channel(user_id)
        return _json(
            {"id": str(channel_id), "type": 1, "recipients": [self.users[user_id].payload()], "last_message_id": None}
        )

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self.users.get(int(request.match_info["user"]))
        return _json(user.payload()) if user else _error(404, 10013, "Unknown User")

    async def _get_member(self, request: web.Request) -> web.Response:
        guild = self.guilds.get(int(request.match_info["guild"]))
        user_id = int(request.match_info["user"])
        if guild is None or user_id not in guild.members:
            return _error(404, 10007, "Unknown Member")
        return _json(self._member_payload(guild, self.users[user_id]))

    async def _member_role(self, request: web.Request) -> web.Response:
        guild = self.guilds[int(request.match_info["guild"])]
        user_id, role_id = int(request.match_info["user"]), int(request.match_info["role"])
        role = guild.roles[role_id]
        bot_top = max(guild.roles[r].position for r in guild.members[self.bot_user.id])
        if not guild.permissions(self.bot_user.id) & MANAGE_ROLES or role.position >= bot_top:
            return _error(403, 50013, "Missing Permissions")
        roles = guild.members.setdefault(user_id, [])
        if request.method == "PUT" and role_id not in roles:
            roles.append(role_id)
        elif request.method == "DELETE" and role_id in roles:
            roles.remove(role_id)
        self.role_changes.append((request.method, guild.id, user_id, role_id))
        await self._notify()
        return web.Response(status=204)

    async def _cdn(self, request: web.Request) -> web.Response:
        entry = self._files.get(request.match_info["name"])
        if entry is None:
            return web.Response(status=404)
        data, content_type = entry
        return web.Response(body=data, headers={"Content-Type": content_type})

    def _message_payload(
        self,
        channel_id: int,
        author: User,
        payload: dict,
        files: list[tuple[str, bytes]],
        attachments: list[dict] | None = None,
    ) -> dict:
        if attachments is None:
            attachments = [
                {
                    "id": str(self.snowflake()),
                    "filename": name,
                    "size": len(data),
                    "url": f"{self.base_url}/cdn/sent-{name}",
                    "proxy_url": f"{self.base_url}/cdn/sent-{name}",
                }
                for name, data in files
            ]
        return {
            "id": str(self.snowflake()),
            "channel_id": str(channel_id),
            "author": author.payload(),
            "content": payload.get("content") or "",
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": payload.get("embeds") or [],
            "pinned": False,
            "type": 0,
            "flags": int(payload.get("flags") or 0),
            "components": [],
        }


async def _read_body(request: web.Request) -> tuple[dict, list[tuple[str, bytes]]]:
    """JSON, or multipart with `payload_json` and `files[n]` parts (as discord.py uploads files)."""
    if request.content_type.startswith("multipart/"):
        payload: dict = {}
        files: list[tuple[str, bytes]] = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if part.name == "payload_json":
                payload = json.loads(await part.text())
            else:
                files.append((part.filename or "", bytes(await part.read())))
        return payload, files
    raw = await request.text()
    return (json.loads(raw) if raw else {}), []


def _json(data: Any, status: int = 200) -> web.Response:
    # Exactly "application/json": discord.py compares the header as is, so "; charset=utf-8" would break it.
    return web.Response(status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"message": message, "code": code}, status)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()
