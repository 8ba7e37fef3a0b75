"""File digests and JSON: one implementation for lineage, the registry, the pipeline steps and
the drift feed.

Standard library only (numpy and pandas values are recognised by duck typing), so the serving
and drift environments import it too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "file_digest",
    "jsonable",
    "sha256_file",
    "sha256_stream",
    "write_json",
    "write_private",
]

_CHUNK = 1 << 20


def sha256_stream(stream: BinaryIO, digest: Any | None = None) -> tuple[str, int]:
    """Hex sha256 and byte count of what is left in `stream`, read in 1 MiB chunks.

    `digest` is a hashlib object to update instead of a new one (its hex digest is returned).
    """
    digest = digest if digest is not None else hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def file_digest(path: Path) -> tuple[str, int]:
    """Hex sha256 and size of a file (the registry's manifest entries)."""
    with Path(path).open("rb") as handle:
        return sha256_stream(handle)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (lineage, data digests, model digests)."""
    return file_digest(path)[0]


def jsonable(value: Any) -> Any:
    """`value` with numpy scalars and arrays, paths, NaN and infinities (-> null), pandas NA
    made JSON-safe; mapping keys become strings; anything else unknown becomes its `str`."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if value is None or isinstance(value, str | int | bool):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy / pandas scalars
        try:
            return jsonable(value.item())
        except (ValueError, TypeError):
            pass
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value.__class__.__name__ in ("NAType", "NaTType"):  # pandas.NA / NaT
        return None
    return str(value)


def write_json(path: Path, doc: Any) -> Path:
    """Write `doc` as sorted, indented JSON (made JSON-safe) atomically: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(jsonable(doc), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def write_private(path: Path, data: bytes | str) -> Path:
    """Write a file only its owner can read (0600) atomically: for secrets and anything that
    holds one. The mode is set when the file is created, so it is never readable by others."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, raw)
    finally:
        os.close(fd)
    tmp.replace(path)
    return path
