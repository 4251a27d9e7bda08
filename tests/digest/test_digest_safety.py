"""Refusals: escaping symlinks, loops, special files, unreadable files and odd names."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest

import chainproof.digest._hashing as hashing_mod
import chainproof.digest._tree as tree_mod
from chainproof.digest import digest_path, hash_bytes, hash_file
from chainproof.digest._walk import FileTask
from chainproof.errors import BadInputError, UnsafePathError


def test_symlink_inside_root_is_followed_under_the_link_name(make_tree) -> None:
    root = make_tree({"real/weights.bin": b"w", "config.json": b"{}"})
    (root / "alias.bin").symlink_to("real/weights.bin")
    (root / "linkdir").symlink_to("real", target_is_directory=True)
    manifest = digest_path(root).manifest
    assert manifest is not None
    assert {e.path: e.digest for e in manifest.entries} == {
        "alias.bin": hash_bytes(b"w"),
        "config.json": hash_bytes(b"{}"),
        "linkdir/weights.bin": hash_bytes(b"w"),
        "real/weights.bin": hash_bytes(b"w"),
    }


def test_symlink_escaping_the_root_is_refused(make_tree, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"outside")
    root = make_tree({"a": b"1"})
    (root / "leak").symlink_to(secret)
    with pytest.raises(UnsafePathError, match="outside"):
        digest_path(root)
    # The only way past it is to say so.
    assert digest_path(root, ignore=["leak"]).digest == digest_path(
        make_tree({"a": b"1"}, "clean")).digest


def test_relative_symlink_climbing_out_is_refused(make_tree, tmp_path: Path) -> None:
    (tmp_path / "sibling").mkdir()
    (tmp_path / "sibling" / "x").write_bytes(b"x")
    root = make_tree({"sub/a": b"1"})
    (root / "sub" / "up").symlink_to("../../sibling", target_is_directory=True)
    with pytest.raises(UnsafePathError, match="outside"):
        digest_path(root)


def test_symlink_to_root_prefix_sibling_is_refused(tmp_path: Path) -> None:
    # "/tmp/x/model-evil" starts with the string "/tmp/x/model" but is not inside it.
    root = tmp_path / "model"
    root.mkdir()
    evil = tmp_path / "model-evil"
    evil.mkdir()
    (evil / "f").write_bytes(b"f")
    (root / "l").symlink_to(evil / "f")
    with pytest.raises(UnsafePathError, match="outside"):
        digest_path(root)


def test_dangling_symlink_is_refused(make_tree) -> None:
    root = make_tree({"a": b"1"})
    (root / "dangling").symlink_to("does-not-exist")
    with pytest.raises(UnsafePathError, match="dangling"):
        digest_path(root)


def test_symlink_loop_is_refused(make_tree) -> None:
    root = make_tree({"a": b"1"})
    (root / "l1").symlink_to("l2")
    (root / "l2").symlink_to("l1")
    with pytest.raises(UnsafePathError):
        digest_path(root)


def test_directory_symlink_to_ancestor_is_refused(make_tree) -> None:
    root = make_tree({"sub/a": b"1"})
    (root / "sub" / "back").symlink_to("..", target_is_directory=True)
    with pytest.raises(UnsafePathError, match="loop"):
        digest_path(root)
    (root / "sub" / "back").unlink()
    (root / "sub" / "self").symlink_to(".", target_is_directory=True)
    with pytest.raises(UnsafePathError, match="loop"):
        digest_path(root)


def test_fifo_is_refused_without_blocking(make_tree, tmp_path: Path) -> None:
    root = make_tree({"a": b"1"})
    os.mkfifo(root / "pipe")
    with pytest.raises(UnsafePathError, match="FIFO"):
        digest_path(root)
    # Given directly, too (opening a FIFO without O_NONBLOCK would hang here).
    with pytest.raises(UnsafePathError):
        digest_path(root / "pipe")
    with pytest.raises(UnsafePathError):
        hash_file(root / "pipe")


def test_fifo_behind_an_inside_symlink_is_refused(make_tree) -> None:
    root = make_tree({"a": b"1"})
    os.mkfifo(root / "pipe")
    (root / "link").symlink_to("pipe")
    with pytest.raises(UnsafePathError):
        digest_path(root, ignore=["pipe"])


def test_socket_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "a").write_bytes(b"1")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(root / "sock"))
        with pytest.raises(UnsafePathError, match="socket"):
            digest_path(root)
    finally:
        sock.close()


def test_device_is_refused() -> None:
    with pytest.raises(UnsafePathError):
        digest_path(Path("/dev/null"))
    with pytest.raises(UnsafePathError):
        hash_file(Path("/dev/zero"))


def test_unreadable_file_is_refused_via_permission_error(
    make_tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests usually run as root, for whom chmod 000 changes nothing: make open() itself fail.
    root = make_tree({"a": b"1", "secret": b"2"})
    real_open = os.open

    def fake_open(path, flags, *args, **kwargs):
        if str(path).endswith("secret"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(hashing_mod.os, "open", fake_open)
    with pytest.raises(UnsafePathError, match="permission denied"):
        digest_path(root)
    with pytest.raises(UnsafePathError, match="permission denied"):
        digest_path(root, workers=1)
    with pytest.raises(UnsafePathError, match="permission denied"):
        hash_file(root / "secret")


def test_unlistable_directory_is_refused(make_tree, monkeypatch: pytest.MonkeyPatch) -> None:
    import chainproof.digest._walk as walk_mod

    root = make_tree({"a": b"1", "locked/b": b"2"})
    real_scandir = os.scandir

    def fake_scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(walk_mod.os, "scandir", fake_scandir)
    with pytest.raises(UnsafePathError, match="permission denied"):
        digest_path(root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read chmod 000 files")
def test_chmod_000_file_is_refused(make_tree) -> None:
    root = make_tree({"a": b"1", "secret": b"2"})
    (root / "secret").chmod(0)
    try:
        with pytest.raises(UnsafePathError, match="permission denied"):
            digest_path(root)
    finally:
        (root / "secret").chmod(0o600)


def test_non_utf8_name_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    fd = os.open(os.path.join(os.fsencode(root), b"bad-\xff"), os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    with pytest.raises(UnsafePathError, match="UTF-8"):
        digest_path(root)


def test_file_replaced_between_walk_and_hash_is_refused(make_tree) -> None:
    root = make_tree({"a": b"1"})
    st = os.stat(root / "a")
    stale = FileTask("a", str(root / "a"), st.st_size, st.st_dev, st.st_ino + 1)
    with pytest.raises(BadInputError, match="replaced"):
        tree_mod._hash_task(stale, "sha256", None)


def test_file_swapped_for_symlink_after_walk_is_refused(make_tree, tmp_path: Path) -> None:
    root = make_tree({"a": b"1"})
    st = os.stat(root / "a")
    task = FileTask("a", str(root / "a"), st.st_size, st.st_dev, st.st_ino)
    outside = tmp_path / "outside"
    outside.write_bytes(b"1")
    (root / "a").unlink()
    (root / "a").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        tree_mod._hash_task(task, "sha256", None)


def test_root_given_as_symlink_is_followed(make_tree, tmp_path: Path) -> None:
    root = make_tree({"a": b"1"})
    link = tmp_path / "link"
    link.symlink_to(root, target_is_directory=True)
    assert digest_path(link) == digest_path(root)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nothing")
    with pytest.raises(UnsafePathError):
        digest_path(dangling)


def test_first_failure_cancels_the_rest(make_tree, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree({f"f{i:03d}": b"x" for i in range(64)})
    calls: list[str] = []
    real = tree_mod._hash_task

    def failing(task, algorithm, on_bytes):
        calls.append(task.rel)
        if len(calls) == 1:
            raise UnsafePathError("boom")
        return real(task, algorithm, on_bytes)

    monkeypatch.setattr(tree_mod, "_hash_task", failing)
    with pytest.raises(UnsafePathError, match="boom"):
        digest_path(root, workers=2)
    assert len(calls) < 64


def test_directory_symlink_bomb_is_refused(tmp_path: Path) -> None:
    # Each level links twice to the next: 2**20 paths from 40 links.
    root = tmp_path / "bomb"
    root.mkdir()
    for level in range(20):
        (root / f"d{level}").mkdir()
    (root / "d20").mkdir()
    (root / "d20" / "leaf").write_bytes(b"x")
    for level in range(20):
        for name in ("a", "b"):
            (root / f"d{level}" / name).symlink_to(f"../d{level + 1}", target_is_directory=True)
    with pytest.raises(UnsafePathError, match="symlink bomb"):
        digest_path(root)
