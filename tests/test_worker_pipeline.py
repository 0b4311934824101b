"""A worker running several jobs at once (issue 14, throughput): they take turns on the device, one at a time and
first come first served, while the others fetch, decode and run the CPU stages. Real arq worker, Redis, SQLite and
tiny models; the engine only records who is inside the device's critical section and, to make the jobs contend
for sure, keeps the first job there until another has queued behind it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bot.requests import JobHandle, LinkSource, UploadSource, UserIdentity
from bot.service import SeparationService
from separation_worker.engine import DeviceLock, EnsembleOutput, SeparationEngine
from separation_worker.inference.device import run_config
from separation_worker.job_runner import JobAbandoned
from separation_worker.models.modes import MODES
from separation_worker.models.zoo import DEFAULT_ENSEMBLE, Ensemble
from stembot.settings import Settings
from tests.conftest import music, write_audio
from tests.service_support import flush_test_redis, service_env, start_worker

# One tiny model, so each separation takes a moment rather than seconds.
ONE_MODEL = Ensemble(tuple(m for m in DEFAULT_ENSEMBLE.members if m.name == "Mel-Band Roformer"))
HANG = 60.0  # a bound on waits that only a broken lock would reach (not a speed limit)


class RecordingEngine(SeparationEngine):
    """The real engine and lock, recording each separation: how long it queued, how many were inside at once.

    The first separation to enter keeps the device until another is queued behind it, then for `hold_s` more
    or until `release` is set, whichever comes first.
    """

    def __init__(self, model_dir, hold_s: float = 0.0):
        super().__init__(ONE_MODEL, model_dir, run_config("cpu"))
        self.hold_s = hold_s
        self.release = threading.Event()
        self.inside = self.most_inside = self.entries = 0
        self.waits: list[float] = []  # per separation, in the order they left
        self.outcomes: list[str] = []  # "ok" or the exception's type, in the order they left
        self._count = threading.Lock()

    def separate(self, mix, progress=None, waiting=None, mode=MODES["vocals"]) -> EnsembleOutput:
        waited = [0.0]

        def record(seconds: float) -> None:
            waited[0] = seconds
            if waiting is not None:
                waiting(seconds)

        try:
            out = super().separate(mix, progress, record, mode)
        except BaseException as exc:
            self.outcomes.append(type(exc).__name__)
            raise
        finally:
            self.waits.append(waited[0])
        self.outcomes.append("ok")
        return out

    def run_ensemble(self, mix, progress=None, mode=MODES["vocals"]) -> EnsembleOutput:
        with self._count:
            self.inside += 1
            self.entries += 1
            self.most_inside = max(self.most_inside, self.inside)
            first = self.entries == 1
        try:
            if first:
                self._keep_device()
            return super().run_ensemble(mix, progress, mode)
        finally:
            with self._count:
                self.inside -= 1

    def _keep_device(self) -> None:
        for _ in range(int(HANG / 0.05)):
            if self.device_lock.waiting:
                break
            self.release.wait(0.05)
        self.release.wait(self.hold_s)


def song(tmp_path, name: str, seconds: float, seed: int = 0) -> UploadSource:
    path = write_audio(tmp_path / name, music(seconds, seed=seed, level=0.4))
    return UploadSource(name, data=path.read_bytes())


async def final_state(service, job_id: str, timeout: float = 180):
    async def run():
        async for event in service.watch(job_id):
            if event.terminal:
                return event
        return None

    return await asyncio.wait_for(run(), timeout)


async def state_reached(service, job_id: str, state: str, timeout: float = 120):
    async def run():
        async for event in service.watch(job_id):
            if event.state == state:
                return event
        return None

    return await asyncio.wait_for(run(), timeout)


async def test_jobs_at_once_take_turns_and_a_bad_one_fails_alone(tmp_path, model_dir, http_server):
    root, base = http_server
    (root / "page.html").write_text("<html>no media</html>")
    await flush_test_redis()
    settings = Settings.from_env(service_env(tmp_path / "data", model_dir, STEMBOT_JOBS_PER_WORKER=3))
    engine = RecordingEngine(model_dir)
    engine.load(allow_download=False)
    users = [UserIdentity("telegram", str(7000 + i)) for i in range(3)]
    async with await SeparationService.start(settings) as service:
        handles = [await service.submit(users[0], song(tmp_path, "a.wav", 2.0, seed=1)),
                   await service.submit(users[1], song(tmp_path, "b.wav", 1.5, seed=2)),
                   await service.submit(users[2], LinkSource(f"{base}/page.html"))]  # passes the checks, no media
        assert all(isinstance(h, JobHandle) for h in handles)
        worker = await start_worker(settings, engine)
        try:
            ends = await asyncio.gather(*(final_state(service, h.job_id) for h in handles))
        finally:
            await worker.stop()

        assert [e.state for e in ends] == ["done", "done", "failed"] and ends[2].message
        assert engine.entries == 2 and engine.most_inside == 1  # never two separations on the device at once
        assert max(engine.waits) > 0  # and one really queued behind the other
        for user, used in zip(users, (1, 1, 0)):
            assert (await service.quota(user)).used == used  # the failed one refunded
        for handle in handles:
            assert (await service.job(handle.job_id)).attempts == 1
            assert await service.claim_delivery(handle.job_id) is True
            assert await service.claim_delivery(handle.job_id) is False  # delivered once
        assert not service.files.job_dir(handles[2].job_id).exists()
        print(f"did: 3 jobs on one worker at once (one a link with no media); checked: both songs done, separated "
              f"one at a time (most inside {engine.most_inside}, waits {[round(w, 2) for w in engine.waits]} s), "
              "the link failed and was refunded, each delivered once")


async def test_waiting_for_the_device_does_not_count_against_the_time_limit(tmp_path, model_dir):
    base_s, factor, short_s = 4.0, 3.0, 0.5
    short_limit = base_s + factor * short_s  # 5.5 s for the short song; 28 s for the long one
    await flush_test_redis()
    settings = Settings.from_env(service_env(tmp_path / "data", model_dir, STEMBOT_JOB_TIMEOUT_BASE_S=base_s,
                                             STEMBOT_JOB_TIMEOUT_FACTOR=factor, STEMBOT_MAX_ATTEMPTS=1))
    engine = RecordingEngine(model_dir, hold_s=short_limit + 1.5)  # the short song waits longer than its limit
    engine.load(allow_download=False)
    users = [UserIdentity("telegram", "7101"), UserIdentity("telegram", "7102")]
    async with await SeparationService.start(settings) as service:
        long = await service.submit(users[0], song(tmp_path, "long.wav", 8.0))
        worker = await start_worker(settings, engine)
        try:
            await state_reached(service, long.job_id, "separating")  # it holds the device from here
            short = await service.submit(users[1], song(tmp_path, "short.wav", short_s))
            ends = await asyncio.gather(final_state(service, long.job_id), final_state(service, short.job_id))
        finally:
            await worker.stop()
        assert [e.state for e in ends] == ["done", "done"], [e.message for e in ends]
        assert engine.waits[1] > short_limit  # queued for longer than its whole limit, and not timed out
        result = await service.result(short.job_id)
        assert result.raw["timings"]["separate"] < engine.waits[1]  # the wait is not the song's separation time
        print(f"did: a {short_s} s song (limit {short_limit} s) queued {engine.waits[1]:.1f} s behind a long one; "
              "checked: it finished, not timed out")


async def test_stopping_the_worker_frees_the_device_and_a_new_worker_finishes_both(tmp_path, model_dir):
    await flush_test_redis()
    settings = Settings.from_env(service_env(tmp_path / "data", model_dir))  # the default: 2 jobs at once
    assert settings.jobs_per_worker == 2
    engine = RecordingEngine(model_dir, hold_s=HANG)  # until released
    engine.load(allow_download=False)
    users = [UserIdentity("telegram", "7201"), UserIdentity("telegram", "7202")]
    async with await SeparationService.start(settings) as service:
        handles = [await service.submit(users[0], song(tmp_path, "a.wav", 1.0)),
                   await service.submit(users[1], song(tmp_path, "b.wav", 1.0, seed=3))]
        worker = await start_worker(settings, engine)
        for _ in range(int(HANG / 0.05)):  # one holds the device, the other is queued for it
            if engine.entries == 1 and engine.device_lock.waiting == 1:
                break
            await asyncio.sleep(0.05)
        assert engine.entries == 1 and engine.device_lock.waiting == 1
        await worker.worker.close()  # as SIGTERM does: cancels both jobs' tasks (arq will run them again)
        await worker.stop()
        engine.release.set()
        for _ in range(int(HANG / 0.05)):  # both pipeline threads stop at their next progress event
            if len(engine.outcomes) == 2:
                break
            await asyncio.sleep(0.05)
        assert sorted(engine.outcomes) == [JobAbandoned.__name__] * 2  # the holder quit, the queued one left
        assert engine.device_lock.waiting == 0

        second = await start_worker(settings, engine)
        try:
            ends = await asyncio.gather(*(final_state(service, h.job_id) for h in handles))
        finally:
            await second.stop()
        assert [e.state for e in ends] == ["done", "done"]
        for user, handle in zip(users, handles):
            assert (await service.job(handle.job_id)).attempts == 2
            assert (await service.quota(user)).used == 1  # charged once
            assert await service.claim_delivery(handle.job_id) is True
            assert await service.claim_delivery(handle.job_id) is False
        print("did: stopped a worker with one job on the device and one queued for it, started another; "
              "checked: both threads let go of the device, both jobs done on attempt 2, delivered once")


def _wait_until(condition, what: str) -> None:
    done = threading.Event()
    for _ in range(int(HANG / 0.01)):
        if condition():
            return
        done.wait(0.01)
    pytest.fail(f"never: {what}")


def test_device_lock_is_first_come_first_served():
    lock = DeviceLock()
    order: list[int] = []

    def take(i: int) -> None:
        with lock.hold():
            order.append(i)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(5)]
    waits: list[float] = []
    with lock.hold(waits.append):
        assert waits == []  # it was free: no wait to report
        for i, thread in enumerate(threads):
            thread.start()
            _wait_until(lambda i=i: lock.waiting == i + 1, f"{i + 1} queued")
    for thread in threads:
        thread.join(HANG)
    assert order == [0, 1, 2, 3, 4]


def test_a_waiter_giving_up_or_a_holder_failing_passes_the_device_on():
    lock = DeviceLock()
    give_up = threading.Event()
    happened: list[str] = []

    class GaveUp(Exception):
        pass

    def impatient(_seconds: float) -> None:  # a job timing out, or cancelled, while queued
        if give_up.is_set():
            raise GaveUp

    def run(name: str, waiting=None, fail: bool = False) -> None:
        try:
            with lock.hold(waiting):
                happened.append(f"{name} in")
                if fail:
                    raise ValueError(name)
        except (GaveUp, ValueError) as exc:
            happened.append(f"{name} {type(exc).__name__}")

    threads = [threading.Thread(target=run, args=("quitter", impatient)),
               threading.Thread(target=run, args=("failing",), kwargs={"fail": True}),
               threading.Thread(target=run, args=("patient",))]
    with lock.hold():
        for i, thread in enumerate(threads):
            thread.start()
            _wait_until(lambda i=i: lock.waiting == i + 1, f"{i + 1} queued")
        give_up.set()
        _wait_until(lambda: lock.waiting == 2, "the quitter left the queue")
    for thread in threads:
        thread.join(HANG)
    assert happened == ["quitter GaveUp", "failing in", "failing ValueError", "patient in"]
    free = threading.Thread(target=run, args=("later",))
    free.start()
    free.join(HANG)
    assert happened[-1] == "later in" and lock.waiting == 0
