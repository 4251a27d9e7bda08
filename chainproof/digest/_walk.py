"""Safe directory traversal: what gets hashed under a root, and what is refused.

Rules (nothing is silently skipped; the explicit ``ignore`` list is the only exclusion):
- regular files are entries; directories are traversed but are not entries themselves;
- a symlink whose target stays inside the root is followed, and the target's bytes are listed
  under the *link's* path; a symlink leaving the root, dangling, or looping is refused;
- FIFOs, sockets and devices are refused; so are names that are not valid UTF-8.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from chainproof.digest._hashing import _kind
from chainproof.digest._model import check_relative_path
from chainproof.errors import MalformedFileError, NotFoundError, UnsafePathError


@dataclass(frozen=True)
class FileTask:
    """A file to hash: its manifest path, the real path to open and the identity seen on walk."""

    rel: str
    real: str
    size: int
    dev: int
    ino: int


# Following directory symlinks lets a few links name exponentially many paths (each level
# linking twice to the next). Legitimate trees follow a handful; a bomb hits this at once.
MAX_DIRECTORY_LINKS = 10_000


class _Budget:
    def __init__(self) -> None:
        self.directory_links = 0


def normalise_ignores(ignore: Iterable[str]) -> frozenset[str]:
    """Validate relative POSIX ignore entries (a trailing ``/`` is allowed and dropped)."""
    result = set()
    for raw in ignore:
        text = str(raw)
        if len(text) > 1:
            text = text.rstrip("/")
        try:
            result.add(check_relative_path(text))
        except MalformedFileError as exc:
            raise UnsafePathError(
                f"bad ignore entry {raw!r}: {exc.message}",
                hint="ignore entries are paths relative to the hashed directory, e.g. 'model.sig'",
            ) from None
    return frozenset(result)


def is_ignored(rel: str, ignores: frozenset[str]) -> bool:
    # Like model_signing's should_ignore: an ignored directory takes its whole subtree with it.
    if rel in ignores:
        return True
    parts = rel.split("/")
    return any("/".join(parts[:i]) in ignores for i in range(1, len(parts)))


def _inside(root_real: str, target: str) -> bool:
    return target == root_real or target.startswith(root_real.rstrip("/") + "/")


def _refuse_name(parent: str, name: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePathError(
            f"refusing {os.path.join(parent, name)!r}: the file name is not valid UTF-8",
            hint="manifests record paths as UTF-8; rename the file",
        ) from None


def collect_files(root: Path, ignores: frozenset[str]) -> list[FileTask]:
    """Every file under directory ``root`` (resolved), as :class:`FileTask`s in walk order."""
    root_real = os.path.realpath(root)
    tasks: list[FileTask] = []
    top = os.stat(root_real)
    _walk_dir(root_real, root_real, "", ignores, tasks, {(top.st_dev, top.st_ino)}, _Budget())
    return tasks


def _walk_dir(
    root_real: str,
    dir_real: str,
    rel_prefix: str,
    ignores: frozenset[str],
    tasks: list[FileTask],
    ancestors: set[tuple[int, int]],
    budget: _Budget,
) -> None:
    shown = os.path.join(root_real, rel_prefix) if rel_prefix else root_real
    try:
        with os.scandir(dir_real) as it:
            entries = list(it)
    except PermissionError:
        raise UnsafePathError(
            f"cannot list directory {shown}: permission denied",
            hint="make it readable, or exclude it explicitly with an ignore entry",
        ) from None
    except FileNotFoundError:
        raise NotFoundError(f"directory {shown} disappeared while it was being hashed") from None
    for entry in entries:
        _refuse_name(shown, entry.name)
        rel = f"{rel_prefix}/{entry.name}" if rel_prefix else entry.name
        if is_ignored(rel, ignores):
            continue
        path = os.path.join(dir_real, entry.name)
        shown_path = os.path.join(root_real, rel)
        try:
            lst = os.lstat(path)
        except FileNotFoundError:
            raise NotFoundError(f"{shown_path} disappeared while it was being hashed") from None
        real = path
        st = lst
        if stat.S_ISLNK(lst.st_mode):
            try:
                real = os.path.realpath(path, strict=True)
            except OSError as exc:
                raise UnsafePathError(
                    f"refusing symlink {shown_path}: it is dangling or loops ({exc.strerror})",
                    hint="fix or remove the link, or exclude it with an ignore entry",
                ) from None
            if not _inside(root_real, real):
                raise UnsafePathError(
                    f"refusing symlink {shown_path}: its target {real} is outside {root_real}",
                    hint="copy the target into the directory, or exclude the link explicitly",
                )
            st = os.stat(real)
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                raise UnsafePathError(
                    f"refusing {shown_path}: it leads back to one of its own parent directories "
                    "(a directory loop)",
                    hint="remove the looping symlink or exclude it with an ignore entry",
                )
            if real != path:
                budget.directory_links += 1
                if budget.directory_links > MAX_DIRECTORY_LINKS:
                    raise UnsafePathError(
                        f"refusing {root_real}: more than {MAX_DIRECTORY_LINKS} directory "
                        f"symlinks followed (at {shown_path}); this looks like a symlink bomb",
                        hint="replace directory symlinks with real directories, or ignore them",
                    )
            _walk_dir(root_real, real, rel, ignores, tasks, ancestors | {key}, budget)
        elif stat.S_ISREG(st.st_mode):
            tasks.append(FileTask(rel, real, st.st_size, st.st_dev, st.st_ino))
        else:
            raise UnsafePathError(
                f"refusing {shown_path}: it is a {_kind(st.st_mode)}, not a regular file",
                hint="only regular files and directories can be hashed; "
                "exclude it explicitly with an ignore entry",
            )
