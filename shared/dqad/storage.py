"""Object storage adapter: Parquet and JSON on ``s3://`` or local paths, with row counts and sha256.

Stages exchange *pointers* (``DataRef``: uri, rows, sha256). Writers compute the sha256 of the
exact bytes stored; readers verify it, so a file overwritten behind a run's back (or truncated by a
failed upload) is detected instead of silently scored.

pyarrow is imported inside the Parquet methods, not at module level: every stage imports this module
(through :mod:`dqad.stage` and :mod:`dqad.bus`), but the bytes/JSON paths (event archive, catalog,
alert state, feedback labels) never touch Parquet, and importing pyarrow costs ~0.3 s of a Lambda
cold start (docs/architecture.md §9). Annotations name pyarrow types under ``TYPE_CHECKING`` only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from dqad.contract import DataRef

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

_CHUNK = 8 * 1024 * 1024


class IntegrityError(RuntimeError):
    """Stored bytes do not match the sha256 recorded in the event that points to them."""


class AlreadyExists(RuntimeError):
    """A write-once object (a model version) is already there."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Location:
    scheme: str  # "s3" or "file"
    bucket: str
    key: str  # for files: the absolute path

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.scheme == "s3" else f"file://{self.key}"


def parse_uri(uri: str) -> Location:
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        if not parsed.netloc or not parsed.path.strip("/"):
            raise ValueError(f"malformed S3 URI {uri!r}: expected s3://bucket/key")
        return Location("s3", parsed.netloc, parsed.path.lstrip("/"))
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return Location("file", "", str(Path(path).resolve()))


class Storage:
    """Reads and writes objects by URI. One instance per container, built from a boto3 S3 client."""

    def __init__(self, s3_client: Any, bucket: str) -> None:
        self.s3 = s3_client
        self.bucket = bucket

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- bytes -----------------------------------------------------------------------------
    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        loc = parse_uri(uri)
        if loc.scheme == "s3":
            self.s3.put_object(Bucket=loc.bucket, Key=loc.key, Body=data, ContentType=content_type)
        else:
            Path(loc.key).parent.mkdir(parents=True, exist_ok=True)
            tmp = f"{loc.key}.tmp-{os.getpid()}"
            Path(tmp).write_bytes(data)
            os.replace(tmp, loc.key)  # atomic: a reader never sees half a file
        return sha256_bytes(data)

    def get_bytes(self, uri: str, sha256: str | None = None) -> bytes:
        loc = parse_uri(uri)
        if loc.scheme == "s3":
            data = self.s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
        else:
            data = Path(loc.key).read_bytes()
        if sha256 is not None and sha256_bytes(data) != sha256:
            raise IntegrityError(f"{uri}: sha256 {sha256_bytes(data)} does not match expected {sha256}")
        return data

    def put_new(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Write an object that must not exist yet (write-once: S3 ``If-None-Match: *``).

        Raises :class:`AlreadyExists` when something is already there: a model version is never
        rewritten under a name the scorer may already have checked (docs/architecture.md §8).
        """
        loc = parse_uri(uri)
        if loc.scheme == "s3":
            try:
                self.s3.put_object(Bucket=loc.bucket, Key=loc.key, Body=data, ContentType=content_type, IfNoneMatch="*")
            except self.s3.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                    raise AlreadyExists(f"{uri} already exists and is write-once") from exc
                raise
        else:
            Path(loc.key).parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(loc.key, "xb") as f:
                    f.write(data)
            except FileExistsError as exc:
                raise AlreadyExists(f"{uri} already exists and is write-once") from exc
        return sha256_bytes(data)

    def put_file(self, uri: str, path: str | Path) -> None:
        loc = parse_uri(uri)
        if loc.scheme == "s3":
            with _transfer(self.s3) as transfer:  # multipart for large files
                transfer.upload_file(str(path), loc.bucket, loc.key)
        else:
            Path(loc.key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, loc.key)  # streamed: a large local file never sits in memory

    def get_file(self, uri: str, path: str | Path) -> None:
        loc = parse_uri(uri)
        if loc.scheme == "s3":
            with _transfer(self.s3) as transfer:
                transfer.download_file(loc.bucket, loc.key, str(path))
        else:
            shutil.copyfile(loc.key, path)

    def exists(self, uri: str) -> bool:
        loc = parse_uri(uri)
        if loc.scheme == "file":
            return Path(loc.key).exists()
        try:
            self.s3.head_object(Bucket=loc.bucket, Key=loc.key)
            return True
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list_uris(self, prefix_uri: str) -> Iterator[str]:
        loc = parse_uri(prefix_uri)
        if loc.scheme == "file":
            base = Path(loc.key)
            if base.is_dir():
                yield from (f"file://{p}" for p in sorted(base.rglob("*")) if p.is_file())
            return
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=loc.bucket, Prefix=loc.key):
            for obj in page.get("Contents", []):
                yield f"s3://{loc.bucket}/{obj['Key']}"

    def presign(self, uri: str, expires_s: int) -> str:
        loc = parse_uri(uri)
        if loc.scheme == "file":
            return loc.uri
        return self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": loc.bucket, "Key": loc.key}, ExpiresIn=expires_s
        )

    # -- JSON ------------------------------------------------------------------------------
    def put_json(self, uri: str, obj: Any) -> str:
        data = json.dumps(obj, indent=1, sort_keys=True, default=str).encode()
        return self.put_bytes(uri, data, "application/json")

    def get_json(self, uri: str) -> Any:
        return json.loads(self.get_bytes(uri))

    # -- Parquet ---------------------------------------------------------------------------
    def write_parquet(self, uri: str, frame: Any) -> DataRef:
        """Write a pandas DataFrame (or pyarrow Table) as one Parquet object; return its pointer."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        sha = self.put_bytes(uri, buf.getvalue())
        return DataRef(uri=parse_uri(uri).uri, rows=table.num_rows, sha256=sha)

    def write_parquet_batches(
        self, uri: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch | pa.Table]
    ) -> DataRef:
        """Stream record batches to Parquet through a temporary file: memory stays bounded by one batch."""
        with self.parquet_sink(uri, schema) as sink:
            for batch in batches:
                sink.write(batch)
        assert sink.ref is not None
        return sink.ref

    def parquet_sink(self, uri: str, schema: pa.Schema) -> ParquetSink:
        """An incremental Parquet writer for ``uri`` (see :class:`ParquetSink`).

        Unlike :meth:`write_parquet_batches`, several sinks can be fed from one pass over a source,
        which is how a fetch routes each chunk's rows to ``history`` and ``new`` without holding
        either in memory.
        """
        return ParquetSink(self, uri, schema)

    def iter_parquet_batches(
        self, uri: str, batch_rows: int = 100_000, columns: list[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of a Parquet object, read from a temporary local copy.

        Memory stays bounded by one batch (plus one row group's pages), whatever the object's size:
        an object on S3 is downloaded to disk first rather than into memory.
        """
        import pyarrow.parquet as pq

        loc = parse_uri(uri)
        with tempfile.TemporaryDirectory(prefix="dqad-") as tmp:
            path = Path(loc.key) if loc.scheme == "file" else Path(tmp) / "part.parquet"
            if loc.scheme == "s3":
                self.get_file(uri, path)
            with pq.ParquetFile(path) as pf:
                yield from pf.iter_batches(batch_size=batch_rows, columns=columns)

    def read_table(
        self, ref: DataRef | str, columns: list[str] | None = None, *, strings_as_dictionary: bool = False
    ) -> pa.Table:
        """One Parquet object as a table, checked against its pointer's sha256 and row count.

        ``strings_as_dictionary`` reads string columns as dictionary arrays (codes + distinct
        values) straight from Parquet's dictionary pages: a million rows of a few thousand series
        names then take a few MB instead of a hundred, for readers that can work on codes.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = self.get_bytes(ref.uri, sha256=ref.sha256) if isinstance(ref, DataRef) else self.get_bytes(ref)
        source = pa.BufferReader(data)  # zero-copy over the bytes (a BytesIO is read through Python)
        dictionary = None
        if strings_as_dictionary:
            schema = pq.read_schema(source)
            dictionary = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
            source = pa.BufferReader(data)
        table = pq.read_table(source, columns=columns, read_dictionary=dictionary)
        if isinstance(ref, DataRef) and table.num_rows != ref.rows:
            raise IntegrityError(f"{ref.uri}: {table.num_rows} rows, event says {ref.rows}")
        return table

    def read_parquet(self, ref: DataRef | str, columns: list[str] | None = None) -> Any:
        return self.read_table(ref, columns).to_pandas()


class ParquetSink:
    """One Parquet object written chunk by chunk, uploaded (with its sha256) only when it is complete.

    Chunks go to a temporary file, so memory is bounded by one chunk. :meth:`close` uploads the file
    and sets :attr:`ref`; :meth:`abort` (or leaving the ``with`` block on an exception) discards it,
    so a failed fetch never leaves a half-written object under a run's deterministic key. Every chunk
    is cast to the sink's schema: a chunk that cannot be cast fails here, naming nothing downstream.
    """

    def __init__(self, storage: Storage, uri: str, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        self.storage = storage
        self.uri = uri
        self.schema = schema
        self.rows = 0
        self.ref: DataRef | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="dqad-")
        self._path = Path(self._tmp.name) / "part.parquet"
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self._path, schema, compression="zstd")

    def write(self, chunk: pa.RecordBatch | pa.Table) -> None:
        if self._writer is None:
            raise RuntimeError(f"{self.uri}: sink is closed")
        if chunk.num_rows == 0:
            return
        import pyarrow as pa

        table = chunk if isinstance(chunk, pa.Table) else pa.Table.from_batches([chunk])
        if table.schema != self.schema:
            table = table.select(self.schema.names).cast(self.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> DataRef:
        """Finish the file, upload it and return its pointer."""
        if self.ref is not None:
            return self.ref
        if self._writer is None:
            raise RuntimeError(f"{self.uri}: sink was aborted")
        self._writer.close()
        self._writer = None
        try:
            sha = sha256_file(self._path)
            self.storage.put_file(self.uri, self._path)
        finally:
            self._tmp.cleanup()
        self.ref = DataRef(uri=parse_uri(self.uri).uri, rows=self.rows, sha256=sha)
        return self.ref

    def abort(self) -> None:
        """Discard what was written; nothing is uploaded."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._tmp.cleanup()

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _transfer(s3: Any) -> Any:
    """boto3's managed (multipart, parallel) transfer for any S3 client, boto3's or plain botocore's.

    Imported here, not at the top: boto3 brings s3transfer and multiprocessing, which a handler that
    never moves a large file should not load at cold start (see :class:`dqad.stage.Clients`).
    """
    from boto3.s3.transfer import S3Transfer

    return S3Transfer(s3)
