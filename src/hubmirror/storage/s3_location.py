"""Where blobs live in an object store: the `s3://BUCKET[/PREFIX]` URL and object keys.

    [PREFIX/]blobs/sha256/ab/cd/<64 hex>    LFS files, named by their sha256
    [PREFIX/]blobs/sha1/ab/cd/<40 hex>      regular files, named by their git blob sha1

The same tree as the cache folder's `blobs/` (`storage.layout`), so an operator reads
the content hash in every key, and `aws s3 sync` between a cache folder and a bucket
keeps the names. `object_key` is the one function that builds a key; `blob_key_of`
reads one back (for listings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hubmirror.core.types import BlobKey
from hubmirror.storage.layout import BLOBS_FOLDER

# S3's rules for a bucket name (3-63 of lowercase letters, digits, dots and hyphens,
# starting and ending with a letter or digit); GCS, MinIO and Ceph follow them.
BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# A prefix of path segments: no empty, `.` or `..` segment, nothing to escape.
PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()-]+")


@dataclass(frozen=True, slots=True)
class S3Location:
    """A bucket and an optional key prefix (no leading or trailing slash)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """`s3://BUCKET` or `s3://BUCKET/PREFIX` (a trailing slash is dropped).

        Raises ValueError for anything else.
        """
        scheme, separator, rest = url.partition("://")
        if scheme != "s3" or not separator:
            raise ValueError(f"not an s3://BUCKET[/PREFIX] URL: {url!r}")
        bucket, _, prefix = rest.partition("/")
        prefix = prefix.rstrip("/")
        if BUCKET_PATTERN.fullmatch(bucket) is None or ".." in bucket:
            raise ValueError(f"not a bucket name: {bucket!r}")
        if prefix and not all(
            PREFIX_SEGMENT.fullmatch(segment) and segment not in {".", ".."}
            for segment in prefix.split("/")
        ):
            raise ValueError(f"not a key prefix: {prefix!r}")
        return cls(bucket, prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def blobs_prefix(self) -> str:
        """The key prefix every blob's key starts with (for listings)."""
        return f"{self.prefix}/{BLOBS_FOLDER}/" if self.prefix else f"{BLOBS_FOLDER}/"

    def object_key(self, key: BlobKey) -> str:
        """The object key of a blob: its hash is in it, as in the cache folder."""
        digest = key.hexdigest
        return f"{self.blobs_prefix}{key.algorithm.value}/{digest[:2]}/{digest[2:4]}/{digest}"

    def blob_key_of(self, object_key: str) -> BlobKey | None:
        """The blob an object key names; None for any other object under the prefix."""
        if not object_key.startswith(self.blobs_prefix):
            return None
        parts = object_key[len(self.blobs_prefix) :].split("/")
        if len(parts) != 4:
            return None
        algorithm, first, second, digest = parts
        key = BlobKey.from_etag(digest)
        if (
            key is None
            or key.algorithm.value != algorithm
            or key.hexdigest != digest
            or (first, second) != (digest[:2], digest[2:4])
        ):
            return None
        return key
