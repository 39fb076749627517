"""edgeshard for Python: read edgeshard and shardyfusion snapshots (sharded SQLite key-value
stores with vectors) from a directory, S3 or any HTTP host.

    >>> import edgeshard
    >>> snap = edgeshard.Snapshot.open("path/to/snapshot")      # or s3://..., https://...
    >>> snap.get("vim")                                          # bytes or None
    >>> snap.search(query_vector, k=5)["results"]                 # the CLI's search object

Answers are the objects `edgeshard` CLI commands print, as plain Python values. Reads release
the GIL, so one Snapshot serves several threads. Errors are `EdgeshardError` subclasses, one per
kind, each with `.kind` and `.retryable` (only `UnavailableError` is retryable).
"""

from ._native import (
    ChangedError,
    CorruptError,
    EdgeshardError,
    InternalError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    Snapshot,
    UnavailableError,
    UnsupportedError,
    route,
)

__all__ = [
    "Snapshot",
    "route",
    "EdgeshardError",
    "InvalidInputError",
    "NotFoundError",
    "CorruptError",
    "UnavailableError",
    "ChangedError",
    "UnsupportedError",
    "PermissionDeniedError",
    "InternalError",
]
