"""Content-addressed data snapshots in the registry bucket.

Layout, under the registry's `prefix` and the snapshot prefix (`snapshots.prefix`)::

    _data/sha256/<digest>.parquet    the snapshot; its name is the sha256 of its bytes

A snapshot is written once: :meth:`SnapshotStore.put` of bytes already stored writes nothing
(deduplication by sha256), and :meth:`SnapshotStore.get` hashes what it reads and refuses bytes
that do not match their name.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainsail.registry.errors import IntegrityError, RegistryError
from mainsail.registry.store import ModelRegistry

if TYPE_CHECKING:
    from collections.abc import Sequence

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class SnapshotNotFoundError(RegistryError):
    """No snapshot with that sha256 in the bucket."""


@dataclass(frozen=True)
class SnapshotRef:
    """Where a snapshot is: what lineage.json and the model card record."""

    sha256: str
    """sha256 of the parquet bytes (the content address)."""
    uri: str
    """`s3://bucket/<key>`."""
    bytes: int
    """Size of the parquet file."""
    rows: int
    """Rows of the snapshot."""
    columns: int
    """Columns of the snapshot."""
    stored: str
    """`written` when this run uploaded it, `deduplicated` when it was already there."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return asdict(self)


class SnapshotStore:
    """Put and get snapshots by sha256 in the registry's bucket."""

    def __init__(self, registry: ModelRegistry, prefix: str = "_data/") -> None:
        self.registry = registry
        self.prefix = f"{registry.prefix}{prefix}"

    def key(self, sha256: str) -> str:
        """Object key of the snapshot with this sha256."""
        if not _DIGEST.match(sha256):
            raise RegistryError(f"{sha256!r} is not a sha256 (64 lower-case hex digits)")
        return f"{self.prefix}sha256/{sha256}.parquet"

    def uri(self, sha256: str) -> str:
        """`s3://bucket/key` of the snapshot."""
        return f"s3://{self.registry.bucket}/{self.key(sha256)}"

    def exists(self, sha256: str) -> bool:
        """Whether the snapshot is stored."""
        from minio.error import S3Error

        try:
            self.registry.client.stat_object(self.registry.bucket, self.key(sha256))
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise
        return True

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store `data` under its sha256 unless already there; (sha256, written)."""
        from mainsail.data.snapshot import sha256_hex

        digest = sha256_hex(data)
        if self.exists(digest):
            return digest, False
        self.registry.client.put_object(
            self.registry.bucket,
            self.key(digest),
            io.BytesIO(data),
            len(data),
            content_type="application/vnd.apache.parquet",
        )
        return digest, True

    def get(self, sha256: str) -> bytes:
        """The snapshot's bytes, checked against their sha256."""
        from mainsail.data.snapshot import sha256_hex

        data = self.registry._get_bytes(self.key(sha256))
        if data is None:
            raise SnapshotNotFoundError(
                f"no data snapshot {sha256[:12]}… in s3://{self.registry.bucket}/{self.prefix}"
            )
        if sha256_hex(data) != sha256:
            raise IntegrityError(f"data snapshot {self.key(sha256)} does not match its sha256")
        return data

    def store_file(self, path: Path, fmt: str = "auto", drop: Sequence[str] = ()) -> SnapshotRef:
        """Store the data file at `path`, without the columns in `drop`, as a snapshot (see
        `mainsail.data.snapshot`)."""
        import pyarrow.parquet as pq

        from mainsail.data.snapshot import snapshot_bytes

        data = snapshot_bytes(Path(path), fmt, drop)
        digest, written = self.put(data)
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
        return SnapshotRef(
            sha256=digest,
            uri=self.uri(digest),
            bytes=len(data),
            rows=int(meta.num_rows),
            columns=int(meta.num_columns),
            stored="written" if written else "deduplicated",
        )
