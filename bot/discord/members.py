"""Who is asking, and whether they hold their server's Pro role (the role Patreon's integration assigns)."""

from __future__ import annotations

import logging

import discord

from bot.requests import UserIdentity
from bot.service import SeparationService

log = logging.getLogger(__name__)

PRO_ROLE_KEY = "pro_role_id"


async def pro_role(service: SeparationService, guild: discord.Guild) -> discord.Role | None:
    """The guild's configured Pro role, if it is set and still exists."""
    role_id = await service.guild_setting(guild.id, PRO_ROLE_KEY)
    return guild.get_role(int(role_id)) if role_id else None


def can_manage(role: discord.Role) -> bool:
    """The bot may add and remove `role`: it has Manage Roles and a higher top role (or owns the server)."""
    me = role.guild.me
    return me is not None and me.guild_permissions.manage_roles and role.is_assignable()


async def identity(
    interaction: discord.Interaction, service: SeparationService, home_guild_id: int | None
) -> UserIdentity:
    """The service's view of the user: the server the request comes from, and whether they hold its Pro role
    (in a DM: the home server's), when that could be checked."""
    user = interaction.user
    holds: bool | None = None
    if interaction.guild_id is None:
        holds = await _holds_home_pro_role(interaction.client, service, home_guild_id, user.id)
    elif interaction.guild is not None and isinstance(user, discord.Member):
        holds = await _holds_pro_role(service, user)
    guild_id = None if interaction.guild_id is None else str(interaction.guild_id)
    return UserIdentity("discord", str(user.id), user.display_name, holds, guild_id)


def member_identity(member: discord.Member, holds_pro_role: bool | None = None) -> UserIdentity:
    """Someone an admin names in their server (grant/revoke); `holds_pro_role` once the bot changed the role."""
    return UserIdentity("discord", str(member.id), member.display_name, holds_pro_role, str(member.guild.id))


async def _holds_pro_role(service: SeparationService, member: discord.Member) -> bool | None:
    role_id = await service.guild_setting(member.guild.id, PRO_ROLE_KEY)
    if not role_id:
        return None  # this server has no Pro role: it says nothing either way
    return member.get_role(int(role_id)) is not None


async def _holds_home_pro_role(
    client: discord.Client, service: SeparationService, home_guild_id: int | None, user_id: int
) -> bool | None:
    """In DMs: the member's roles in the home guild, from the cache or else one REST lookup.

    None when the member can't be seen there: then the role status storage remembers still counts.
    """
    guild = client.get_guild(home_guild_id) if home_guild_id else None
    if guild is None:
        return None
    member = guild.get_member(user_id)
    if member is None:
        try:
            member = await guild.fetch_member(user_id)  # the member cache needs a privileged intent
        except discord.HTTPException as exc:
            log.info("home guild lookup of a member failed (HTTP %s)", exc.status)
            return None
    return await _holds_pro_role(service, member)
