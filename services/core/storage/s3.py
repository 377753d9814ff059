"""S3-compatible object storage (AWS S3, MinIO, ...)."""

from __future__ import annotations

import tempfile
from typing import IO, Any

import boto3
from botocore.config import Config

from services.core.config import Settings
from services.core.storage.base import StoredFile, new_key, spool_and_hash

PREFIX = "s3:"


class S3Storage:
    """Objects under S3_KEY_PREFIX in S3_BUCKET; ChatbotMobile downloads pre-signed URLs."""

    def __init__(self, settings: Settings) -> None:
        assert settings.s3_bucket is not None
        self._bucket = settings.s3_bucket
        self._prefix = settings.s3_key_prefix
        options: dict[str, Any] = {
            "region_name": settings.s3_region,
            "config": Config(retries={"max_attempts": 2}, signature_version="s3v4"),
        }
        if settings.s3_endpoint_url:
            options["endpoint_url"] = settings.s3_endpoint_url
        if settings.s3_access_key_id and settings.s3_secret_access_key:
            options["aws_access_key_id"] = settings.s3_access_key_id.get_secret_value()
            options["aws_secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
        self._client = boto3.client("s3", **options)

    def save(
        self, source: IO[bytes], *, filename: str, content_type: str, max_bytes: int
    ) -> StoredFile:
        spool, size, sha256 = spool_and_hash(source, max_bytes)
        key = self._prefix + new_key(filename)
        with spool:
            self._client.upload_fileobj(
                spool, self._bucket, key, ExtraArgs={"ContentType": content_type}
            )
        return StoredFile(PREFIX + key, filename, content_type, size, sha256)

    def open(self, ref: str) -> IO[bytes]:
        target = tempfile.TemporaryFile()  # noqa: SIM115  (returned open to the caller)
        self._client.download_fileobj(self._bucket, _key(ref), target)
        target.seek(0)
        return target

    def delete(self, ref: str) -> None:
        self._client.delete_object(Bucket=self._bucket, Key=_key(ref))

    def url_for(self, ref: str, ttl_s: int) -> str:
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": _key(ref)}, ExpiresIn=ttl_s
        )
        return url


def _key(ref: str) -> str:
    if not ref.startswith(PREFIX):
        raise ValueError(f"not an S3 storage reference: {ref!r}")
    return ref[len(PREFIX) :]
