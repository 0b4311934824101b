"""The object store: stems and uploads in any S3-compatible store (MinIO, Cloudflare R2, AWS S3, ...).

With STEMBOT_STORAGE_URL=s3://bucket/prefix, workers on other machines need share only Redis, the database and the
store, not a filesystem. Each job's objects live under `<prefix>/<job_id>/<name>`; every key a method takes is
relative to the store's prefix and validated first, so no key (`../x`, `/abs`, `a//b`) can name anything else.

The methods are synchronous (boto3); async callers wrap them in `asyncio.to_thread`. One boto3 client, made once,
is shared by every thread. Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
profiles, instance roles) and are never logged here.
"""

from __future__ import annotations

import builtins
import mimetypes
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import boto3
import botocore.config
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from storage.clock import UTC
from storage.errors import InvalidName, StorageError

MiB = 1024 * 1024
MULTIPART_THRESHOLD = 8 * MiB  # boto3's default: files above it go up (and down) in parts, several at once
MIN_PART_SIZE = 5 * MiB  # S3 refuses smaller parts (except the last)
DELETE_BATCH = 1000  # the most keys one DeleteObjects request may name
MAX_KEY_BYTES = 1024  # S3's limit on a full key, UTF-8
MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4 presigned URLs last a week at most

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
_NO_BUCKET_CODES = {"404", "NoSuchBucket", "NotFound"}
_BUCKET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]")  # loose: legacy AWS names had capitals
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# The platform's tables differ (Python's built-in one has no .flac): these are the types stems are sent as.
_AUDIO_TYPES = {
    ".flac": "audio/flac",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
}


@dataclass(frozen=True)
class StorageLocation:
    """Where files live, as STEMBOT_STORAGE_URL names it."""

    kind: Literal["local", "s3"]
    path: Path | None = None  # the local folder (kind "local")
    bucket: str = ""  # kind "s3"
    prefix: str = ""  # no leading or trailing slash; may be ""


def parse_storage_url(url: str, default_dir: Path) -> StorageLocation:
    """The location STEMBOT_STORAGE_URL names: "" (the local `default_dir`), `file:///abs/path`, a plain path, or
    `s3://bucket[/prefix]`. Raises ValueError, naming the variable, for anything else."""
    url = url.strip()
    if not url:
        return StorageLocation("local", path=default_dir)
    lowered = url.lower()
    if lowered.startswith("s3://"):
        return _parse_s3_url(url)
    if lowered.startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment or not parts.path.startswith("/"):
            raise ValueError(
                f"STEMBOT_STORAGE_URL={_shown(url)!r}: a file URL must name an absolute path, file:///path"
            )
        return StorageLocation("local", path=Path(unquote(parts.path)))
    if _SCHEME.match(url):
        raise ValueError(
            f"STEMBOT_STORAGE_URL={_shown(url)!r}: unsupported scheme; use s3://bucket/prefix, file:///path or a plain path"
        )
    return StorageLocation("local", path=Path(url).expanduser())


def _shown(url: str) -> str:
    """`url` for an error message, without any user:password@ someone put in it."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", url)


def _parse_s3_url(url: str) -> StorageLocation:
    parts = urlsplit(url)
    bucket = parts.netloc
    if not bucket:
        raise ValueError(f"STEMBOT_STORAGE_URL={_shown(url)!r}: an S3 URL must name a bucket, s3://bucket/prefix")
    if parts.query or parts.fragment or not _BUCKET_NAME.fullmatch(bucket) or not 3 <= len(bucket) <= 63:
        raise ValueError(
            f"STEMBOT_STORAGE_URL={_shown(url)!r}: not a bucket name (3-63 letters, digits, '.', '-', '_'); "
            "the endpoint and the credentials are set apart from the URL"
        )
    prefix = unquote(parts.path).strip("/")
    try:
        _validate_prefix(prefix)
    except InvalidName as e:
        raise ValueError(f"STEMBOT_STORAGE_URL={_shown(url)!r}: bad prefix: {e}") from None
    return StorageLocation("s3", bucket=bucket, prefix=prefix)


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the store's prefix, e.g. "<job_id>/vocals.flac"
    size: int
    modified_at: datetime  # tz-aware, UTC


class ObjectStore:
    """The objects under `s3://bucket/prefix`; every key is relative to the prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
        page_size: int = 1000,
        multipart_threshold: int = MULTIPART_THRESHOLD,
    ) -> None:
        if not bucket:
            raise ValueError("an object store needs a bucket")
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be 1..1000 (ListObjectsV2's limit), not {page_size}")
        prefix = prefix.strip("/")
        _validate_prefix(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.region = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.page_size = page_size
        # Parts no smaller than the threshold (or S3's minimum): a file just over it goes up in two parts.
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=max(multipart_threshold, MIN_PART_SIZE)
        )
        if client is None:
            config = botocore.config.Config(
                signature_version="s3v4",
                # MinIO and most self-hosted stores don't serve bucket names as subdomains of the endpoint.
                s3={"addressing_style": "path"} if endpoint_url else {},
                retries={"max_attempts": 5, "mode": "standard"},
            )
            client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, region_name=self.region, config=config
            )
        self.client: Any = client  # the boto3 client, for anything this class doesn't wrap
        self._bucket_seen = False  # set once the bucket is known to exist (see _check_bucket)

    @classmethod
    def from_location(cls, location: StorageLocation, endpoint_url: str | None = None) -> ObjectStore:
        if location.kind != "s3":
            raise ValueError(f"an object store needs an s3:// location, not a {location.kind} one")
        return cls(location.bucket, location.prefix, endpoint_url=endpoint_url)

    def describe(self) -> str:
        """`s3://bucket/prefix`, for logs."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def put_file(self, key: str, path: Path) -> None:
        """Upload `path` as `key` (replacing any object there), in parallel parts when it is big."""
        full = self._full_key(key)
        self.client.upload_file(
            str(path), self.bucket, full, ExtraArgs={"ContentType": _content_type(key)}, Config=self._transfer
        )

    def get_file(self, key: str, path: Path) -> bool:
        """Download `key` to `path`; False when there is no such object (and `path` is left untouched).

        The download goes to a hidden temp file next to `path`, renamed over it once complete, so a reader never
        sees half a file. Any error other than "not found" is raised.
        """
        full = self._full_key(key)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            self.client.download_file(self.bucket, full, tmp_name, Config=self._transfer)
            os.replace(tmp, path)
        except ClientError as e:
            if _error_code(e) in _NOT_FOUND_CODES:
                self._check_bucket()
                return False
            raise
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def exists(self, key: str) -> bool:
        full = self._full_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=full)
        except ClientError as e:
            if _error_code(e) in _NOT_FOUND_CODES:
                self._check_bucket()
                return False
            raise
        return True

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Every object under the folder `prefix` ("" for the whole store), sorted by key.

        `prefix` names a folder: "job-1" and "job-1/" both mean the objects under `job-1/`, never `job-1x/...`.
        """
        start = self._full_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        found = []
        skip = len(self.prefix) + 1 if self.prefix else 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=start, PaginationConfig={"PageSize": self.page_size}):
            for item in page.get("Contents", ()):
                modified = item["LastModified"]
                if modified.tzinfo is None:  # botocore parses ISO times as UTC; some stores send no zone
                    modified = modified.replace(tzinfo=UTC)
                found.append(ObjectInfo(item["Key"][skip:], int(item["Size"]), modified.astimezone(UTC)))
        found.sort(key=lambda info: info.key)
        return found

    def delete(self, keys: Iterable[str]) -> int:
        """Delete the named objects (missing ones are no error); returns how many keys were given."""
        full = [self._full_key(key) for key in keys]  # every key checked before anything is deleted
        for start in range(0, len(full), DELETE_BATCH):
            batch = full[start : start + DELETE_BATCH]
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            errors = response.get("Errors") or []
            if errors:  # DeleteObjects reports per-key failures (e.g. access denied) in a 200 response
                first = errors[0]
                raise StorageError(
                    f"{self.describe()}: could not delete {len(errors)} object(s), e.g. {first.get('Key')!r}: "
                    f"{first.get('Code')} {first.get('Message')}"
                )
        return len(full)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under the folder `prefix` (e.g. a job id); returns how many there were.

        An empty prefix is refused: emptying the whole store takes `delete(info.key for info in list())`.
        """
        if not prefix.strip("/"):
            raise InvalidName("delete_prefix needs a folder; it never empties the whole store")
        return self.delete(info.key for info in self.list(prefix))

    def presigned_url(self, key: str, *, expires_s: int, filename: str | None = None) -> str:
        """A URL that GETs `key` without credentials for `expires_s` seconds; with `filename`, browsers save the
        response under that name."""
        if not 1 <= expires_s <= MAX_PRESIGN_S:
            raise ValueError(f"expires_s must be 1..{MAX_PRESIGN_S} (SigV4's limit), not {expires_s}")
        params = {"Bucket": self.bucket, "Key": self._full_key(key)}
        if filename is not None:
            params["ResponseContentDisposition"] = _attachment(filename)
        url: str = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)
        return url

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (tests, a fresh MinIO); harmless when it exists."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as e:
            if _error_code(e) not in _NO_BUCKET_CODES:
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":  # us-east-1 is the default and must not be named
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as e:
            if _error_code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
            # Another process created it between our check and our create (BucketAlreadyExists: MinIO's word).

    def _check_bucket(self) -> None:
        """Raise StorageError if the bucket itself is missing: a HEAD's bare 404 can't tell it from a missing key,
        and a mistyped bucket must not pass for "no such file" everywhere."""
        if self._bucket_seen:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if _error_code(e) in _NO_BUCKET_CODES:
                raise StorageError(f"{self.describe()}: the bucket {self.bucket!r} does not exist") from None
            raise
        self._bucket_seen = True

    def _full_key(self, key: str) -> str:
        _validate_key(key)
        full = f"{self.prefix}/{key}" if self.prefix else key
        if len(full.encode()) > MAX_KEY_BYTES:
            raise InvalidName(f"object key {key!r} is longer than S3's {MAX_KEY_BYTES} bytes")
        return full

    def _full_prefix(self, prefix: str) -> str:
        folder = prefix.rstrip("/")
        if folder:
            _validate_key(folder)
        parts = [p for p in (self.prefix, folder) if p]
        return "/".join(parts) + "/" if parts else ""


def _validate_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidName("an object key is required")
    if "\\" in key or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise InvalidName(f"object key {key!r} contains a backslash, NUL or control character")
    if key.startswith("/"):
        raise InvalidName(f"object key {key!r} is absolute")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidName(f"object key {key!r} has an empty, '.' or '..' part")


def _validate_prefix(prefix: str) -> None:
    if prefix:
        _validate_key(prefix)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _content_type(key: str) -> str:
    suffix = Path(key).suffix.lower()
    return _AUDIO_TYPES.get(suffix) or mimetypes.guess_type(key)[0] or "application/octet-stream"


def _attachment(filename: str) -> str:
    """A Content-Disposition that saves the response as `filename` (the same form the web pages send)."""
    # RFC 6266: modern clients take the exact UTF-8 `filename*`, old ones an ASCII approximation.
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
