"""Shards of a large run (docs/architecture.md §12): split by load group, name the parts, fan out.

A run whose fetched rows exceed the dataset's ``[shards] max_rows`` is written by the fetcher as
``ceil(rows / max_rows)`` shards. A shard holds whole load groups (a table's metrics stay together,
so cross-metric features and labels see the same rows as in one file), chosen by a stable hash of
the group, so the same data always shards the same way whoever writes it.

Files of a sharded run sit beside the unsharded ones, one part per shard:
``runs/<dataset>/<run_id>/<name>/part-<NNNN>.parquet`` (name: history, new, labeled, scores). A
:class:`~dqad.contract.DataRef` whose uri ends in ``/`` stands for all parts under that prefix: its
rows are the total and its sha256 the digest of the parts' own (:func:`parts_ref`).

This module is pure computation over Parquet and the contract; the join of the shards' completions
(DynamoDB) is :mod:`dqad.shard_join`, imported only by the stages that join (labeler, scorer), so
that no other stage's code calls DynamoDB (each role grants what its own code calls).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from dqad.contract import DataRef
from dqad.contract.models import MAX_SHARDS

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from dqad.storage import ParquetSink, Storage

#: Rows read at once while partitioning: memory is bounded by one batch, whatever the run's size.
PARTITION_BATCH_ROWS = 500_000


class TooManyShards(ValueError):
    """The run would need more shards than one event can list."""


def shard_count(rows: int, max_rows: int) -> int:
    """Shards for a run of ``rows`` rows: 1 up to ``max_rows``, then ``ceil(rows / max_rows)``."""
    count = max(1, math.ceil(rows / max_rows))
    if count > MAX_SHARDS:
        raise TooManyShards(
            f"{rows:,} rows at [shards] max_rows = {max_rows:,} make {count} shards; at most {MAX_SHARDS}: "
            "raise max_rows"
        )
    return count


def part_uri(prefix: str, name: str, index: int) -> str:
    return f"{prefix}/{name}/part-{index:04d}.parquet"


def join_id(*parts: str) -> str:
    """A new fan-out's id: a digest of what it was made from and of a nonce.

    Every fan-out joins apart, as every unsharded message is handled apart: a producer's message
    handled again (a redelivery, ``dqad replay --follow``) fans out anew and its join emits the next
    event again, exactly as the unsharded chain re-emits it (and the notifier sends a run once).
    Within one fan-out, a shard handled twice counts once (:mod:`dqad.shard_join`).
    """
    return hashlib.sha256("\x1f".join((*parts, uuid.uuid4().hex)).encode()).hexdigest()[:16]


def parts_ref(prefix: str, name: str, refs: Sequence[DataRef]) -> DataRef:
    """The pointer to all parts of ``name``: the prefix, the total rows, the digest of the parts."""
    digest = hashlib.sha256("\n".join(r.sha256 for r in refs).encode()).hexdigest()
    return DataRef(uri=f"{prefix}/{name}/", rows=sum(r.rows for r in refs), sha256=digest)


def group_shards(groups: pa.Array | pa.ChunkedArray, count: int) -> np.ndarray:
    """Each row's shard (0 .. count-1), from a stable hash of its load group.

    The hash is computed once per distinct group (a batch holds many rows of few groups), with
    blake2b, which is the same in every process (Python's ``hash`` of a string is salted per process).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(groups, pa.ChunkedArray):
        groups = groups.combine_chunks()
    if not pa.types.is_dictionary(groups.type):
        groups = pc.dictionary_encode(groups)
    values = groups.dictionary.to_pylist()
    by_code = np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(), "big") % count for v in values),
        dtype=np.int32,
        count=len(values),
    )
    codes = groups.indices.to_numpy(zero_copy_only=False)
    return by_code[codes] if len(by_code) else np.zeros(len(groups), dtype=np.int32)


def partition(storage: Storage, prefix: str, sources: dict[str, DataRef], count: int) -> list[dict[str, DataRef]]:
    """Write each source file (e.g. history, new) as ``count`` parts by load group, streaming.

    Returns, per non-empty shard in order, its parts by name; a shard that no group hashed to is
    dropped and the others are numbered without a gap (so ``count`` is an upper bound). Nothing is
    uploaded before every source has been read: parts go to local temporary files first.
    """
    import pyarrow as pa

    sinks: dict[str, list[ParquetSink]] = {}
    rows = {name: [0] * count for name in sources}
    try:
        for name, ref in sources.items():
            sinks[name] = []
            for batch in storage.iter_parquet_batches(ref.uri, batch_rows=PARTITION_BATCH_ROWS):
                table = pa.Table.from_batches([batch])
                if not sinks[name]:
                    # the final name is known once every shard's rows are counted (empty ones dropped)
                    sinks[name] = [storage.parquet_sink("", table.schema) for _ in range(count)]
                for i, part in _split(table, group_shards(table.column("group"), count), count):
                    sinks[name][i].write(part)
                    rows[name][i] += part.num_rows
        keep = [i for i in range(count) if any(rows[name][i] for name in sources)] or [0]
        out: list[dict[str, DataRef]] = [{} for _ in keep]
        for name in sources:
            if not sinks[name]:  # an empty source file: every shard gets an empty part of its schema
                empty = storage.read_table(sources[name]).schema.empty_table()
                for new_index in range(len(keep)):
                    out[new_index][name] = storage.write_parquet(part_uri(prefix, name, new_index), empty)
                continue
            for new_index, i in enumerate(keep):
                sink = sinks[name][i]
                sink.uri = part_uri(prefix, name, new_index)
                out[new_index][name] = sink.close()
            for i, sink in enumerate(sinks[name]):
                if i not in keep:
                    sink.abort()
        return out
    except BaseException:
        for parts in sinks.values():
            for sink in parts:
                sink.abort()
        raise


def _split(table: pa.Table, shard: np.ndarray, count: int) -> Iterable[tuple[int, pa.Table]]:
    """The rows of ``table`` by shard, keeping their order within each shard."""
    import numpy as np

    if count == 1:
        yield 0, table
        return
    order = np.argsort(shard, kind="stable")
    bounds = np.searchsorted(shard[order], np.arange(count + 1))
    sorted_table = table.take(order)
    for i in range(count):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        if hi > lo:
            yield i, sorted_table.slice(lo, hi - lo)
