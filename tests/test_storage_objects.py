"""The S3 object store, through a real HTTP endpoint (moto's server on 127.0.0.1)."""

from __future__ import annotations

import os
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.config
import pytest

from storage.clock import UTC
from storage.errors import InvalidName, StorageError
from storage.objects import MIN_PART_SIZE, ObjectInfo, ObjectStore, StorageLocation, parse_storage_url
from tests.support.s3_server import s3_credentials_env, s3_server

BUCKET = "stembot-test"
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in s3_credentials_env().items():
            mp.setenv(name, value)
        # The autouse proxy fixture is function-scoped: this one's requests (ensure_bucket) run before it.
        for name in (*_PROXY_VARS, "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(name, raising=False)
        with s3_server() as url:
            ObjectStore(BUCKET, endpoint_url=url).ensure_bucket()
            yield url


@pytest.fixture
def store(endpoint: str) -> ObjectStore:
    return ObjectStore(BUCKET, f"test/{uuid.uuid4().hex}", endpoint_url=endpoint)


@pytest.fixture
def raw(endpoint: str):
    """A plain boto3 client, to look at objects from outside the store."""
    config = botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "path"})
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _fetch(url: str) -> tuple[bytes, dict[str, str]]:
    with _NO_PROXY.open(url, timeout=10) as response:
        return response.read(), dict(response.headers)


# --- STEMBOT_STORAGE_URL ---


def test_parse_storage_url_local(tmp_path: Path) -> None:
    assert parse_storage_url("", tmp_path) == StorageLocation("local", path=tmp_path)
    assert parse_storage_url("  ", tmp_path) == StorageLocation("local", path=tmp_path)
    assert parse_storage_url("file:///srv/stem%20files", tmp_path) == StorageLocation(
        "local", path=Path("/srv/stem files")
    )
    assert parse_storage_url("file://localhost/srv/x", tmp_path) == StorageLocation("local", path=Path("/srv/x"))
    assert parse_storage_url("/var/lib/stembot", tmp_path) == StorageLocation("local", path=Path("/var/lib/stembot"))
    assert parse_storage_url("data/files", tmp_path) == StorageLocation("local", path=Path("data/files"))


def test_parse_storage_url_s3(tmp_path: Path) -> None:
    assert parse_storage_url("s3://stems", tmp_path) == StorageLocation("s3", bucket="stems")
    assert parse_storage_url("s3://stems/", tmp_path) == StorageLocation("s3", bucket="stems")
    assert parse_storage_url("s3://my.stems-1/prod/files/", tmp_path) == StorageLocation(
        "s3", bucket="my.stems-1", prefix="prod/files"
    )
    assert parse_storage_url("S3://stems/a", tmp_path) == StorageLocation("s3", bucket="stems", prefix="a")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "http://minio:9000/stems",
        "s3://",
        "s3:///prefix",
        "s3://ab",  # too short for a bucket
        "s3://minio:9000/stems",  # the endpoint is not part of the URL
        "s3://stems/a//b",
        "s3://stems/a/../b",
        "s3://stems/a?x=1",
        "file://otherhost/x",
        "file:relative/path",
    ],
)
def test_parse_storage_url_refuses(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="STEMBOT_STORAGE_URL"):
        parse_storage_url(url, tmp_path)


def test_parse_storage_url_hides_credentials(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as caught:
        parse_storage_url("s3://AKIAXXXX:topsecret@stems/x", tmp_path)
    assert "topsecret" not in str(caught.value) and "AKIAXXXX" not in str(caught.value)


def test_from_location_and_describe(endpoint: str, tmp_path: Path) -> None:
    store = ObjectStore.from_location(parse_storage_url(f"s3://{BUCKET}/deep/prefix/", tmp_path), endpoint)
    assert (store.bucket, store.prefix, store.describe()) == (BUCKET, "deep/prefix", f"s3://{BUCKET}/deep/prefix")
    assert ObjectStore(BUCKET, endpoint_url=endpoint).describe() == f"s3://{BUCKET}"
    with pytest.raises(ValueError):
        ObjectStore.from_location(StorageLocation("local", path=tmp_path))


# --- files in and out ---


def test_round_trip_multipart(endpoint: str, raw, tmp_path: Path) -> None:
    # A threshold at S3's minimum part size, so a 6 MB file goes up in two parts (5 MB + 1 MB).
    store = ObjectStore(BUCKET, f"test/{uuid.uuid4().hex}", endpoint_url=endpoint, multipart_threshold=MIN_PART_SIZE)
    data = os.urandom(6 * 1024 * 1024 + 123)
    store.put_file("job-1/vocals.flac", _write(tmp_path / "up.flac", data))

    head = raw.head_object(Bucket=BUCKET, Key=f"{store.prefix}/job-1/vocals.flac")
    assert head["ETag"].strip('"').endswith("-2")  # a multipart object's ETag counts its parts
    assert head["ContentType"] == "audio/flac"
    assert head["ContentLength"] == len(data)

    down = tmp_path / "down" / "vocals.flac"
    assert store.get_file("job-1/vocals.flac", down) is True
    assert down.read_bytes() == data
    assert os.listdir(down.parent) == ["vocals.flac"]  # the temp file was renamed, not left beside it


def test_put_replaces_and_get_overwrites(store: ObjectStore, tmp_path: Path) -> None:
    store.put_file("job-1/result.json", _write(tmp_path / "a.json", b'{"v": 1}'))
    store.put_file("job-1/result.json", _write(tmp_path / "b.json", b'{"v": 2}'))
    target = _write(tmp_path / "local.json", b"old")
    assert store.get_file("job-1/result.json", target) is True
    assert target.read_bytes() == b'{"v": 2}'
    assert store.exists("job-1/result.json") is True
    assert store.exists("job-1/other.json") is False


def test_get_missing_leaves_nothing(store: ObjectStore, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    assert store.get_file("job-1/nope.flac", folder / "nope.flac") is False
    assert os.listdir(folder) == []  # neither the file nor a temp file

    existing = _write(folder / "keep.flac", b"mine")
    assert store.get_file("job-1/keep.flac", existing) is False
    assert existing.read_bytes() == b"mine"
    assert os.listdir(folder) == ["keep.flac"]


def test_missing_bucket_is_an_error_not_a_missing_file(endpoint: str, tmp_path: Path) -> None:
    store = ObjectStore("stembot-no-such-bucket", endpoint_url=endpoint)
    with pytest.raises(StorageError, match="does not exist"):
        store.get_file("job-1/a.flac", tmp_path / "a.flac")
    with pytest.raises(StorageError, match="does not exist"):
        store.exists("job-1/a.flac")
    assert os.listdir(tmp_path) == []


def test_ensure_bucket(endpoint: str) -> None:
    ObjectStore(BUCKET, endpoint_url=endpoint).ensure_bucket()  # already there: harmless
    fresh = ObjectStore(f"stembot-{uuid.uuid4().hex[:12]}", endpoint_url=endpoint, region="eu-west-1")
    fresh.ensure_bucket()
    fresh.ensure_bucket()
    assert fresh.list() == []


# --- listing and deleting ---


def test_list(store: ObjectStore, tmp_path: Path) -> None:
    before = datetime.now(UTC) - timedelta(minutes=1)
    src = _write(tmp_path / "x", b"12345")
    for key in ("job-1/b.flac", "job-1/a.flac", "job-1/incoming/song.mp3", "job-1x/a.flac", "job-2/a.flac"):
        store.put_file(key, src)

    listed = store.list("job-1/")
    assert [info.key for info in listed] == ["job-1/a.flac", "job-1/b.flac", "job-1/incoming/song.mp3"]
    assert all(info.size == 5 for info in listed)
    for info in listed:
        assert info.modified_at.utcoffset() == timedelta(0)
        assert before < info.modified_at < datetime.now(UTC) + timedelta(minutes=1)
    assert store.list("job-1") == listed  # a folder either way, never job-1x
    assert [i.key for i in store.list("job-1/incoming")] == ["job-1/incoming/song.mp3"]
    assert len(store.list()) == 5
    assert store.list("job-3") == []


def test_list_pages(endpoint: str, tmp_path: Path) -> None:
    store = ObjectStore(BUCKET, f"test/{uuid.uuid4().hex}", endpoint_url=endpoint, page_size=2)
    calls: list[str] = []
    store.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append("list"))
    src = _write(tmp_path / "x", b"z")
    keys = [f"job-1/{n}.flac" for n in range(5)]
    for key in reversed(keys):
        store.put_file(key, src)
    listed = store.list()
    assert listed == [ObjectInfo(key, 1, info.modified_at) for key, info in zip(keys, listed)]
    assert [i.key for i in store.list("job-1")] == keys
    assert len(calls) == 3 * 2  # 5 objects, 2 a page: three requests per listing


def test_delete_and_delete_prefix(store: ObjectStore, tmp_path: Path) -> None:
    src = _write(tmp_path / "x", b"z")
    for key in ("job-1/a.flac", "job-1/b.flac", "job-1/incoming/s.mp3", "job-1x/a.flac", "job-2/a.flac"):
        store.put_file(key, src)

    assert store.delete(["job-2/a.flac", "job-2/missing.flac"]) == 2  # a missing key is no error
    assert [i.key for i in store.list()] == ["job-1/a.flac", "job-1/b.flac", "job-1/incoming/s.mp3", "job-1x/a.flac"]

    assert store.delete_prefix("job-1/") == 3
    assert [i.key for i in store.list()] == ["job-1x/a.flac"]  # the sibling survives
    assert store.delete_prefix("job-1") == 0
    assert store.delete([]) == 0
    with pytest.raises(InvalidName):
        store.delete_prefix("")
    assert [i.key for i in store.list()] == ["job-1x/a.flac"]


def test_store_prefix_is_respected(endpoint: str, raw, tmp_path: Path) -> None:
    parent = f"test/{uuid.uuid4().hex}"
    outer = ObjectStore(BUCKET, parent, endpoint_url=endpoint)
    inner = ObjectStore(BUCKET, f"{parent}/inner/", endpoint_url=endpoint)
    src = _write(tmp_path / "x", b"z")
    outer.put_file("job-1/a.flac", src)
    inner.put_file("job-1/a.flac", src)
    keys = [o["Key"] for o in raw.list_objects_v2(Bucket=BUCKET, Prefix=f"{parent}/")["Contents"]]
    assert sorted(keys) == [f"{parent}/inner/job-1/a.flac", f"{parent}/job-1/a.flac"]
    assert [i.key for i in inner.list()] == ["job-1/a.flac"]
    assert inner.delete_prefix("job-1") == 1
    assert [i.key for i in outer.list()] == ["job-1/a.flac"]


# --- presigned URLs ---


def test_presigned_url(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(50_000)
    store.put_file("job-1/vocals.flac", _write(tmp_path / "v.flac", data))

    body, headers = _fetch(store.presigned_url("job-1/vocals.flac", expires_s=60))
    assert body == data
    assert "Content-Disposition" not in headers

    body, headers = _fetch(store.presigned_url("job-1/vocals.flac", expires_s=60, filename="Song ü.flac"))
    assert body == data
    assert headers["Content-Disposition"] == "attachment; filename=\"Song _.flac\"; filename*=UTF-8''Song%20%C3%BC.flac"


def test_presigned_url_expiry(store: ObjectStore, tmp_path: Path) -> None:
    store.put_file("job-1/a.flac", _write(tmp_path / "a.flac", b"z"))
    url = store.presigned_url("job-1/a.flac", expires_s=1)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["1"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    # moto (5.2) checks neither presigned signatures nor their expiry: it would still serve this URL after 2 s,
    # so there is no refusal to wait for here. Real S3, MinIO and R2 answer 403 once X-Amz-Expires has passed.
    with pytest.raises(ValueError):
        store.presigned_url("job-1/a.flac", expires_s=0)
    with pytest.raises(ValueError):
        store.presigned_url("job-1/a.flac", expires_s=8 * 24 * 3600)


# --- key validation ---


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a\\b", "", ".", "a/./b", "a/..", "a/", "nul\x00", "cr\rlf"])
def test_invalid_keys_never_reach_the_store(store: ObjectStore, key: str, tmp_path: Path) -> None:
    sent: list[object] = []
    store.client.meta.events.register("before-send.s3", lambda **kw: sent.append(kw))
    src = _write(tmp_path / "x", b"z")
    calls: list[Callable[[], object]] = [
        lambda: store.put_file(key, src),
        lambda: store.get_file(key, tmp_path / "y"),
        lambda: store.exists(key),
        lambda: store.delete(["job-1/ok.flac", key]),
        lambda: store.presigned_url(key, expires_s=60),
    ]
    if key not in ("", "a/"):  # both are fine folders for list ("" is the whole store)
        calls += [lambda: store.list(key), lambda: store.delete_prefix(key)]
    for call in calls:
        with pytest.raises(InvalidName):
            call()
    assert sent == []
    assert not (tmp_path / "y").exists()


def test_invalid_store_prefix(endpoint: str) -> None:
    for prefix in ("a//b", "../x", "a\\b"):
        with pytest.raises(InvalidName):
            ObjectStore(BUCKET, prefix, endpoint_url=endpoint)
