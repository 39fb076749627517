"""Types of edgeshard's native module (see the package docs)."""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

Key = Union[int, str, bytes]

class EdgeshardError(Exception):
    kind: str
    retryable: bool

class InvalidInputError(EdgeshardError): ...
class NotFoundError(EdgeshardError): ...
class CorruptError(EdgeshardError): ...
class UnavailableError(EdgeshardError): ...
class ChangedError(EdgeshardError): ...
class UnsupportedError(EdgeshardError): ...
class PermissionDeniedError(EdgeshardError): ...
class InternalError(EdgeshardError): ...

class Snapshot:
    @staticmethod
    def open(
        root: str,
        access: str = "auto",
        cache_dir: Optional[str] = None,
        cache_pages: Optional[int] = None,
        storage_options: Optional[Sequence[Tuple[str, str]]] = None,
    ) -> "Snapshot":
        """Opens the snapshot at `root` (directory, file://, s3:// or http(s)://); `access` is
        "auto", "download" or "range" as in the CLI; `storage_options` are object_store's S3
        settings (`aws_endpoint`, `aws_region`, ...)."""
    def get(self, key: Key) -> Optional[bytes]:
        """The value stored under `key`, or None."""
    def multi_get(self, keys: Sequence[Key]) -> List[Optional[bytes]]:
        """Values for `keys` in input order (None for absent keys)."""
    def search(
        self,
        vector: Sequence[float],
        k: int = 10,
        filter: Optional[Sequence[str]] = None,
        fields: Optional[Sequence[str]] = None,
        probes: Optional[int] = None,
        nprobes: Optional[int] = None,
        ef: Optional[int] = None,
        refine: Optional[int] = None,
        exact: bool = False,
        shards: Optional[Sequence[int]] = None,
    ) -> Dict[str, Any]:
        """The CLI's search object: `results` (id, score, payload, shard), `shards_queried`,
        `shards`, `latency_ms`. Options mean what the CLI's flags mean."""
    def info(self) -> Dict[str, Any]:
        """The CLI's `info` object."""
    def history(self) -> List[Dict[str, Any]]:
        """Published versions under the root, with the current one marked."""
    def route(self, key: Key) -> int:
        """The shard `key` routes to."""

def route(keys: Sequence[Key], num_dbs: int, key_encoding: str = "u64be") -> List[int]:
    """The shard of each key for `num_dbs` shards (byte-exact with shardyfusion's router)."""
