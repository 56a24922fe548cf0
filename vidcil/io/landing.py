"""The landing zone: where incoming batches arrive, a local folder or an S3 prefix (boto3).

A batch is ``<landing>/<batch_id>/`` and is complete when its ``labels.csv`` exists (uploaders write
it last). S3 credentials and a custom endpoint (MinIO, a local test server) come from the standard
AWS environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``) or the
worker's role, never from this project's files.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class LandingZone:
    uri: str  # a folder, or s3://bucket/prefix
    retries: int = 2  # an endpoint that does not answer: asked this many more times ...
    timeout_s: int = 20  # ... waiting this long each (connect and read), then ServiceUnavailable

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def _bucket_prefix(self) -> tuple[str, str]:
        bucket, _, prefix = self.uri.removeprefix("s3://").partition("/")
        return bucket, prefix.strip("/")

    def _s3(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", config=Config(connect_timeout=self.timeout_s, read_timeout=self.timeout_s,
                                                retries={"max_attempts": self.retries + 1, "mode": "standard"}))

    def _unavailable(self, error: Exception) -> Exception:
        from vidcil.io.contract import ServiceUnavailable, service_problem

        why = service_problem(error)
        return ServiceUnavailable(f"landing zone {self.uri}: {why}") if why else error

    def complete_batches(self) -> list[str]:
        """Ids of the batches whose labels.csv exists, in arrival (sort) order."""
        if not self.is_s3:
            root = Path(self.uri)
            return sorted(p.name for p in root.iterdir() if (p / "labels.csv").is_file()) if root.is_dir() else []
        try:
            return self._s3_complete_batches()
        except Exception as e:
            raise self._unavailable(e) from e

    def _s3_complete_batches(self) -> list[str]:
        bucket, prefix = self._bucket_prefix()
        pages = self._s3().get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", Delimiter="/")
        ids = [PurePosixPath(p["Prefix"]).name for page in pages for p in page.get("CommonPrefixes", [])]
        return sorted(b for b in ids if self._s3_exists(bucket, self._key(prefix, b, "labels.csv")))

    @staticmethod
    def _key(prefix: str, *parts: str) -> str:
        return "/".join(([prefix] if prefix else []) + list(parts))

    def _s3_exists(self, bucket: str, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._s3().head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as e:
            if e.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def fetch(self, batch_id: str, dest: Path) -> Path:
        """The batch as a local folder at ``dest`` (downloaded whole, then renamed into place)."""
        if not self.is_s3:
            source = Path(self.uri) / batch_id
            if source.resolve() != Path(dest).resolve():
                shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
            return Path(dest)
        try:
            return self._s3_fetch(batch_id, dest)
        except Exception as e:
            raise self._unavailable(e) from e

    def _s3_fetch(self, batch_id: str, dest: Path) -> Path:
        bucket, prefix = self._bucket_prefix()
        base = self._key(prefix, batch_id) + "/"
        staging = Path(dest).with_name(f".{Path(dest).name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        s3 = self._s3()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
            for obj in page.get("Contents", []):
                rel = PurePosixPath(obj["Key"][len(base):])
                if not rel.parts or ".." in rel.parts:  # a key cannot leave the batch folder
                    continue
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(target))
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(staging, dest)
        return Path(dest)
