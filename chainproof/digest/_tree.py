"""Digests of paths (a file, or a directory through its manifest), in parallel, with progress."""

from __future__ import annotations

import functools
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TypeVar

from chainproof.digest._hashing import hash_fd_range, hash_open_file, open_regular
from chainproof.digest._model import (
    DEFAULT_ALGORITHM,
    Manifest,
    ManifestEntry,
    PathDigest,
    check_algorithm,
    new_hasher,
)
from chainproof.digest._walk import FileTask, collect_files, normalise_ignores
from chainproof.errors import BadInputError, NotFoundError, UnsafePathError

# Show a progress bar (interactive stderr only) when the job should take more than about a second.
PROGRESS_THRESHOLD_BYTES = 1_000_000_000
# model_signing's default shard size for its "shards" serialization.
MODEL_SIGNING_SHARD_SIZE = 1_000_000_000

_T = TypeVar("_T")
OnBytes = Callable[[int], None]


def _default_workers(workers: int | None) -> int:
    if workers is None:
        return os.cpu_count() or 1
    if workers < 1:
        raise BadInputError(f"workers must be at least 1, got {workers}")
    return workers


@contextmanager
def _progress(total: int, enabled: bool | None, label: str) -> Iterator[OnBytes | None]:
    if enabled is None:
        enabled = sys.stderr.isatty() and total > PROGRESS_THRESHOLD_BYTES
    if not enabled:
        yield None
        return
    # Imported lazily: rich costs ~50 ms to import and most calls never show a bar.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)

        # Progress.advance takes a lock, so workers may call it concurrently.
        def advance(n: int) -> None:
            bar.advance(task, n)

        yield advance


def _run_parallel(jobs: Sequence[Callable[[], _T]], workers: int) -> list[_T]:
    """Run ``jobs`` on a thread pool; results in job order. The first failure cancels the rest."""
    if workers == 1 or len(jobs) <= 1:
        return [job() for job in jobs]
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs)),
                            thread_name_prefix="chainproof-hash") as pool:
        futures: list[Future[_T]] = [pool.submit(job) for job in jobs]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            if future.exception() is not None:
                for other in futures:
                    other.cancel()
                raise future.exception()  # type: ignore[misc]
        return [future.result() for future in futures]


def _hash_task(task: FileTask, algorithm: str, on_bytes: OnBytes | None) -> ManifestEntry:
    # Open the real target with O_NOFOLLOW and check it is the very file seen during the walk,
    # so a path swapped for a symlink or another file in between is caught, not hashed.
    shown = task.rel
    fd, st = open_regular(Path(task.real), follow_symlinks=False)
    try:
        if (st.st_dev, st.st_ino) != (task.dev, task.ino):
            raise BadInputError(
                f"{shown} was replaced while the directory was being hashed",
                hint="hash directories only when nothing is writing them",
            )
        hexdigest, size = hash_open_file(fd, st, shown, algorithm, on_bytes=on_bytes)
    finally:
        os.close(fd)
    return ManifestEntry(task.rel, size, hexdigest)


def _resolve_root(path: Path) -> tuple[Path, os.stat_result]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise UnsafePathError(f"{path} is a dangling symbolic link") from None
        raise NotFoundError(f"no such file or directory: {path}", hint="check the path") from None
    except PermissionError:
        raise UnsafePathError(f"cannot access {path}: permission denied") from None
    except OSError as exc:  # e.g. ELOOP
        raise UnsafePathError(f"cannot access {path}: {exc.strerror}") from None
    return Path(os.path.realpath(path)), st


def digest_path(
    path: Path,
    algorithm: str = DEFAULT_ALGORITHM,
    *,
    workers: int | None = None,
    ignore: Iterable[str] = (),
    progress: bool | None = None,
) -> PathDigest:
    """Digest of a file (its bytes) or of a directory (its canonical manifest).

    Files are hashed in parallel on ``workers`` threads (default: one per CPU). ``ignore`` lists
    paths relative to the directory to leave out (a directory takes its subtree). ``progress``:
    ``None`` shows a bar only on an interactive stderr for jobs over ~1 GB.
    """
    check_algorithm(algorithm)
    n_workers = _default_workers(workers)
    ignores = normalise_ignores(ignore)
    root, st = _resolve_root(Path(path))

    if stat.S_ISREG(st.st_mode):
        fd, fst = open_regular(root)
        try:
            with _progress(fst.st_size, progress, root.name) as on_bytes:
                hexdigest, size = hash_open_file(fd, fst, root, algorithm, on_bytes=on_bytes)
        finally:
            os.close(fd)
        return PathDigest(hexdigest, algorithm, size, False, None)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(
            f"refusing {path}: not a regular file or directory",
            hint="only regular files and directories can be hashed",
        )

    tasks = collect_files(root, ignores)
    # Biggest first: with few large files this keeps every worker busy until the end.
    tasks.sort(key=lambda t: t.size, reverse=True)
    total = sum(t.size for t in tasks)
    with _progress(total, progress, root.name) as on_bytes:
        jobs = [functools.partial(_hash_task, t, algorithm, on_bytes) for t in tasks]
        entries = _run_parallel(jobs, n_workers)
    manifest = Manifest.build(algorithm, entries)
    return PathDigest(manifest.digest(), algorithm, manifest.total_size, True, manifest)


# --- model_signing "shards" serialization -------------------------------------------------------


def _shard_bounds(size: int, shard_size: int) -> list[tuple[int, int]]:
    # Same endpoints as model_signing's file_shard._endpoints; empty files have no shard at all.
    bounds = []
    start = 0
    while start < size:
        end = min(start + shard_size, size)
        bounds.append((start, end))
        start = end
    return bounds


def _hash_shard(task: FileTask, start: int, end: int, on_bytes: OnBytes | None) -> str:
    fd, st = open_regular(Path(task.real), follow_symlinks=False)
    try:
        if (st.st_dev, st.st_ino) != (task.dev, task.ino) or st.st_size != task.size:
            raise BadInputError(f"{task.rel} changed while the directory was being hashed")
        hasher = new_hasher("sha256")
        got = hash_fd_range(fd, start, end - start, hasher, on_bytes=on_bytes)
        if got != end - start:
            raise BadInputError(f"{task.rel} shrank while it was being hashed")
    finally:
        os.close(fd)
    return str(hasher.hexdigest())


def model_signing_shard_resources(
    path: Path,
    *,
    shard_size: int = MODEL_SIGNING_SHARD_SIZE,
    workers: int | None = None,
    ignore: Iterable[str] = (),
    progress: bool | None = None,
) -> list[dict[str, str]]:
    """The ``resources`` model_signing 1.x emits for its "shards" serialization (SHA-256).

    Every file is cut into ``shard_size`` pieces hashed in parallel (so even one huge file uses
    every core). Names are ``"<path>:<start>:<end>"``, the algorithm ``"sha256-sharded-<size>"``,
    and the order model_signing's: by (PurePosixPath, start, end). Zero-byte files have no shard
    and so do not appear, exactly as in model_signing. Pair with ``model_signing_root_digest``.
    """
    if shard_size < 1:
        raise BadInputError(f"shard size must be positive, got {shard_size}")
    n_workers = _default_workers(workers)
    ignores = normalise_ignores(ignore)
    root, st = _resolve_root(Path(path))
    if not stat.S_ISDIR(st.st_mode):
        raise BadInputError(
            f"{path} is not a directory",
            hint="shard resources are computed for a model directory",
        )
    tasks = collect_files(root, ignores)
    shards = [(t, start, end) for t in tasks for start, end in _shard_bounds(t.size, shard_size)]
    total = sum(end - start for _, start, end in shards)
    with _progress(total, progress, root.name) as on_bytes:
        jobs = [functools.partial(_hash_shard, t, s, e, on_bytes) for t, s, e in shards]
        digests = _run_parallel(jobs, n_workers)
    items = sorted(
        ((PurePosixPath(t.rel).parts, s, e, t.rel, d) for (t, s, e), d in zip(shards, digests,
                                                                              strict=True)),
    )
    algorithm = f"sha256-sharded-{shard_size}"
    return [
        {"name": f"{rel}:{s}:{e}", "algorithm": algorithm, "digest": d}
        for _, s, e, rel, d in items
    ]
