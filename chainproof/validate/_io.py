"""Reading datasets as a stream of Arrow record batches.

Every analysis in this package consumes ``Iterator[pyarrow.RecordBatch]`` so that a file larger than
memory is read once, batch by batch, and an in-memory frame goes through exactly the same code path
(which is what makes batched and in-memory results identical by construction).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from chainproof.errors import BadInputError, MalformedFileError, NotFoundError

DEFAULT_BATCH_ROWS = 131_072

_PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class _Source:
    """A dataset that can be read (possibly several times) as Arrow batches."""

    schema: pa.Schema
    table: pa.Table | None
    path: Path | None
    kind: str  # "memory" | "parquet" | "csv"
    batch_rows: int

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Batches of exactly ``batch_rows`` rows (the last may be shorter), whatever the source.

        Fixed boundaries make per-batch floating-point sums identical for a file and for the
        same data in memory, so batched and in-memory reports agree bit for bit.
        """
        pending: list[pa.RecordBatch] = []
        size = 0
        for batch in self._raw_batches():
            if batch.schema != self.schema:
                batch = pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
            pending.append(batch)
            size += batch.num_rows
            while size >= self.batch_rows:
                table = pa.Table.from_batches(pending, schema=self.schema)
                head = table.slice(0, self.batch_rows).combine_chunks()
                yield head.to_batches()[0]
                rest = table.slice(self.batch_rows)
                pending, size = rest.to_batches(), rest.num_rows
        if size:
            tail = pa.Table.from_batches(pending, schema=self.schema).combine_chunks()
            yield tail.to_batches()[0]

    def _raw_batches(self) -> Iterator[pa.RecordBatch]:
        if self.table is not None:
            yield from self.table.to_batches(max_chunksize=self.batch_rows)
            return
        assert self.path is not None
        if self.kind == "parquet":
            try:
                pf = pq.ParquetFile(self.path)
                yield from pf.iter_batches(batch_size=self.batch_rows)
            except (pa.ArrowInvalid, OSError) as exc:
                raise _malformed(self.path, exc) from exc
            return
        try:
            reader = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(block_size=1 << 22),
                convert_options=pacsv.ConvertOptions(column_types=self.schema),
            )
            yield from reader
        except (pa.ArrowInvalid, OSError) as exc:
            raise _malformed(self.path, exc) from exc


def _malformed(path: Path, exc: Exception) -> MalformedFileError:
    text = str(exc)
    if "UTF8" in text or "utf8" in text.lower() or "utf-8" in text.lower():
        # Decision: refuse rather than guess an encoding. Guessing (latin-1, cp1252) silently turns
        # bytes into different categories, which is exactly the kind of meaning change this gate
        # exists to catch.
        return MalformedFileError(
            f"{path}: text is not valid UTF-8 ({text.splitlines()[0]})",
            hint="re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or write Parquet",
        )
    return MalformedFileError(
        f"{path}: cannot be read as a table "
        f"({text.splitlines()[0] if text else type(exc).__name__})",
        hint="check the file is a well-formed CSV (header row, same number of fields per row, one "
        "type per column) or Parquet file",
    )


def _from_path(path: Path, batch_rows: int) -> _Source:
    if not path.exists():
        raise NotFoundError(f"{path}: no such file", hint="check the dataset path")
    if not path.is_file():
        raise BadInputError(f"{path}: not a regular file", hint="pass a CSV or Parquet file")
    with path.open("rb") as fh:
        head = fh.read(4)
    if head == _PARQUET_MAGIC or path.suffix.lower() in (".parquet", ".pq"):
        try:
            schema = pq.ParquetFile(path).schema_arrow
        except (pa.ArrowInvalid, OSError) as exc:
            raise _malformed(path, exc) from exc
        return _Source(schema, None, path, "parquet", batch_rows)
    if path.stat().st_size == 0:
        raise MalformedFileError(
            f"{path}: file is empty", hint="a CSV dataset needs at least a header row"
        )
    try:
        # Types are inferred from the first block and then pinned for the whole file, so every
        # batch has the same schema; a later value that does not fit is a clear error, not a
        # silently different column type between batches.
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 22))
        schema = reader.schema
        reader.close()
    except (pa.ArrowInvalid, OSError) as exc:
        raise _malformed(path, exc) from exc
    # Arrow infers ``binary`` for a CSV column whose bytes are not valid UTF-8.
    binary = [
        f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)
    ]
    if binary:
        raise _malformed(path, pa.ArrowInvalid(f"column(s) {binary} hold invalid UTF8 data"))
    return _Source(schema, None, path, "csv", batch_rows)


def _from_object(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__
    if module.startswith("polars"):
        table = data.to_arrow()
        return pa.Table.from_batches(table.to_batches(), schema=table.schema)
    if module.startswith("pandas"):
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise BadInputError(
                f"DataFrame cannot be converted to a columnar table: {exc}",
                hint="make each column hold one type (e.g. cast mixed object columns to str)",
            ) from exc
    raise BadInputError(
        f"unsupported dataset type {type(data).__name__}",
        hint="pass a CSV/Parquet path, a pandas or polars DataFrame, or a pyarrow Table",
    )


def open_source(data: Any, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> _Source:
    """Wrap a path or an in-memory frame as a re-readable batch source."""
    if batch_rows < 1:
        raise BadInputError("batch_rows must be >= 1", hint="use the default")
    if isinstance(data, _Source):
        return data
    if isinstance(data, str | Path):
        return _from_path(Path(data), batch_rows)
    table = _from_object(data)
    return _Source(table.schema, table, None, "memory", batch_rows)


def read_table(data: Any, columns: list[str] | None = None) -> pa.Table:
    """Read a whole dataset into memory (used by analyses that need all rows of a sample)."""
    src = open_source(data)
    if src.table is not None:
        return src.table.select(columns) if columns is not None else src.table
    batches = list(src.batches())
    table = pa.Table.from_batches(batches, schema=src.schema)
    return table.select(columns) if columns is not None else table
