"""Service counters in Redis (shared by every bot and worker process) and their Prometheus text form."""

from __future__ import annotations

from redis.asyncio import Redis

from . import queue

KEY = "stembot:metrics"


async def count(redis: Redis, name: str, amount: float = 1) -> None:
    await redis.hincrbyfloat(KEY, name, amount)  # type: ignore[misc]  # redis-py's sync|async union


async def record_job(redis: Redis, outcome: str, timings: dict[str, float] | None = None, duration: float = 0.0) -> None:
    """A job ended: its outcome, and for finished ones the seconds each stage took."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrbyfloat(KEY, f"jobs:{outcome}", 1)
        for stage, seconds in (timings or {}).items():
            if "." not in stage and stage != "total":
                pipe.hincrbyfloat(KEY, f"stage_seconds:{stage}", seconds)
                pipe.hincrbyfloat(KEY, f"stage_runs:{stage}", 1)
        if duration:
            pipe.hincrbyfloat(KEY, "audio_seconds", duration)
        await pipe.execute()


async def snapshot(redis: Redis) -> dict[str, float]:
    raw = await redis.hgetall(KEY)  # type: ignore[misc]
    values = {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}
    values["queue_depth"] = float(len(await queue.waiting_ids(redis)))
    return values


def prometheus_text(values: dict[str, float]) -> str:
    """The snapshot in Prometheus' text exposition format."""
    lines = [
        "# HELP stembot_queue_depth Jobs waiting for a worker.",
        "# TYPE stembot_queue_depth gauge",
        f"stembot_queue_depth {values.get('queue_depth', 0):g}",
        "# HELP stembot_jobs_total Jobs that ended, by outcome.",
        "# TYPE stembot_jobs_total counter",
    ]
    for outcome in ("done", "failed"):
        lines.append(f'stembot_jobs_total{{outcome="{outcome}"}} {values.get(f"jobs:{outcome}", 0):g}')
    lines += ["# HELP stembot_refusals_total Submissions refused (at no cost), by reason.",
              "# TYPE stembot_refusals_total counter"]
    for name, value in sorted(values.items()):
        if name.startswith("refusals:"):
            lines.append(f'stembot_refusals_total{{reason="{name.split(":", 1)[1]}"}} {value:g}')
    lines += ["# HELP stembot_stage_seconds_total Seconds spent per pipeline stage.",
              "# TYPE stembot_stage_seconds_total counter"]
    stages = sorted(n.split(":", 1)[1] for n in values if n.startswith("stage_seconds:"))
    for stage in stages:
        lines.append(f'stembot_stage_seconds_total{{stage="{stage}"}} {values[f"stage_seconds:{stage}"]:.3f}')
    lines += ["# TYPE stembot_stage_runs_total counter"]
    for stage in stages:
        lines.append(f'stembot_stage_runs_total{{stage="{stage}"}} {values.get(f"stage_runs:{stage}", 0):g}')
    songs = values.get("stage_runs:separate", 0)
    lines += ["# HELP stembot_separation_seconds_per_song Mean model (GPU) seconds per song.",
              "# TYPE stembot_separation_seconds_per_song gauge",
              f"stembot_separation_seconds_per_song {values.get('stage_seconds:separate', 0) / songs if songs else 0:.3f}",
              "# HELP stembot_audio_seconds_total Seconds of audio separated.",
              "# TYPE stembot_audio_seconds_total counter",
              f"stembot_audio_seconds_total {values.get('audio_seconds', 0):.1f}"]
    return "\n".join(lines) + "\n"
