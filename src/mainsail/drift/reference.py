"""Loading a model version's reference sample and feature schema (local folder or S3).

The location is a template (`DriftConfig.reference`) with `{model}` and `{version}`; a local
path or `s3://bucket/prefix`. S3 is read with the minio client, imported only when needed.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainsail.data.schema import FeatureSchema

if TYPE_CHECKING:
    import pandas as pd
    from minio import Minio

__all__ = ["ReferenceData", "ReferenceError", "ReferenceLoader"]

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ReferenceError(LookupError):
    """The reference of a model version cannot be found or read; the message says where."""


@dataclass(frozen=True)
class ReferenceData:
    """What the detectors of one model version are built from."""

    schema: FeatureSchema
    frame: pd.DataFrame
    location: str


class ReferenceLoader:
    """Reads `<location>/<reference_file>` and `<location>/<schema_file>`."""

    def __init__(
        self,
        template: str,
        reference_file: str = "reference.parquet",
        schema_file: str = "feature_schema.json",
        s3: Minio | None = None,
    ) -> None:
        self.template = template
        self.reference_file = reference_file
        self.schema_file = schema_file
        self.s3 = s3
        if template.startswith("s3://") and s3 is None:
            raise ReferenceError(
                f"reference {template!r} is on S3 but no S3 endpoint was given "
                "(pass --s3-endpoint or MAINSAIL_S3_ENDPOINT)"
            )

    def location(self, model: str, version: str) -> str:
        # Names end up in paths and object keys: refuse anything that could escape the folder.
        for what, value in (("model", model), ("version", version)):
            if not _SAFE.match(value):
                raise ReferenceError(
                    f"{what} {value!r} is not a valid name (letters, digits, '.', '_', '-')"
                )
        return self.template.format(model=model, version=version)

    def load(self, model: str, version: str) -> ReferenceData:
        import pandas as pd

        where = self.location(model, version)
        schema_bytes = self._read(where, self.schema_file)
        try:
            schema = FeatureSchema.model_validate_json(schema_bytes)
        except ValueError as err:
            raise ReferenceError(
                f"{where}/{self.schema_file}: not a valid feature schema: {err}"
            ) from None
        data = self._read(where, self.reference_file)
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as err:  # pyarrow raises several types for a bad file
            raise ReferenceError(
                f"{where}/{self.reference_file}: not a readable parquet file: {err}"
            ) from None
        if len(frame) == 0:
            raise ReferenceError(f"{where}/{self.reference_file}: the reference sample has no rows")
        return ReferenceData(schema=schema, frame=frame, location=where)

    def read_optional(self, model: str, version: str, name: str) -> bytes | None:
        """Another file of the version's folder, or None when it is not there."""
        try:
            return self._read(self.location(model, version), name)
        except ReferenceError:
            return None

    def _read(self, where: str, name: str) -> bytes:
        if where.startswith("s3://"):
            bucket, _, prefix = where[len("s3://") :].partition("/")
            key = f"{prefix.rstrip('/')}/{name}" if prefix else name
            assert self.s3 is not None
            from minio.error import S3Error

            try:
                response: Any = self.s3.get_object(bucket, key)
                try:
                    return bytes(response.read())
                finally:
                    response.close()
                    response.release_conn()
            except S3Error as err:
                raise ReferenceError(f"s3://{bucket}/{key}: {err.code}") from None
        path = Path(where) / name
        if not path.is_file():
            raise ReferenceError(f"{path}: no such file")
        return path.read_bytes()
