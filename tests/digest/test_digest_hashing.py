"""Known vectors, digest strings, file hashing and directory manifests."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import chainproof.digest._hashing as hashing_mod
from chainproof.digest import (
    Manifest,
    ManifestEntry,
    PathDigest,
    digest_path,
    format_digest,
    hash_bytes,
    hash_file,
    parse_digest,
)
from chainproof.errors import BadInputError, MalformedFileError, NotFoundError

SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
SHA256_HELLO_NL = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
BLAKE3_EMPTY = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
BLAKE3_ABC = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"


def test_known_vectors() -> None:
    assert hash_bytes(b"") == SHA256_EMPTY
    assert hash_bytes(b"abc") == SHA256_ABC
    assert hash_bytes(b"abc", "sha256") == SHA256_ABC
    assert hash_bytes(b"", "blake3") == BLAKE3_EMPTY
    assert hash_bytes(b"abc", "blake3") == BLAKE3_ABC


def test_unknown_algorithm_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="unsupported digest algorithm"):
        hash_bytes(b"x", "md5")
    f = tmp_path / "f"
    f.write_bytes(b"x")
    with pytest.raises(BadInputError):
        hash_file(f, "sha1")
    with pytest.raises(BadInputError):
        digest_path(f, "sha512")


def test_hash_file_known_and_sha256sum(tmp_path: Path) -> None:
    f = tmp_path / "hello.txt"
    f.write_bytes(b"hello\n")
    assert hash_file(f) == SHA256_HELLO_NL
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert hash_file(empty) == SHA256_EMPTY
    assert hash_file(empty, "blake3") == BLAKE3_EMPTY
    if shutil.which("sha256sum"):
        out = subprocess.run(["sha256sum", str(f)], capture_output=True, check=True, text=True)
        assert out.stdout.split()[0] == hash_file(f)


@pytest.mark.parametrize("algorithm", ["sha256", "blake3"])
def test_hash_file_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algorithm: str
) -> None:
    monkeypatch.setattr(hashing_mod, "CHUNK_SIZE", 1024)
    monkeypatch.setattr(hashing_mod, "_local", type(hashing_mod._local)())
    data = os.urandom(3 * 1024 + 17)
    f = tmp_path / "f"
    f.write_bytes(data)
    assert hash_file(f, algorithm) == hash_bytes(data, algorithm)
    exact = tmp_path / "exact"
    exact.write_bytes(data[: 2 * 1024])
    assert hash_file(exact, algorithm) == hash_bytes(data[: 2 * 1024], algorithm)


def test_file_that_changes_size_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"0123456789")
    fd, st = hashing_mod.open_regular(f)
    try:
        with f.open("ab") as grow:
            grow.write(b"more")
        with pytest.raises(BadInputError, match="changed size"):
            hashing_mod.hash_open_file(fd, st, f, "sha256")
    finally:
        os.close(fd)


def test_parse_and_format_digest() -> None:
    assert parse_digest(f"sha256:{SHA256_ABC}") == ("sha256", SHA256_ABC)
    assert parse_digest(f"blake3:{BLAKE3_ABC}") == ("blake3", BLAKE3_ABC)
    assert format_digest("sha256", SHA256_ABC) == f"sha256:{SHA256_ABC}"
    bad = [
        SHA256_ABC,  # no algorithm
        f"SHA256:{SHA256_ABC}",
        f"sha256:{SHA256_ABC.upper()}",
        f"sha256:{SHA256_ABC[:-1]}",
        f"sha256:{SHA256_ABC}0",
        f"sha256: {SHA256_ABC}",
        f"sha256:{SHA256_ABC}\n",
        f"md5:{SHA256_ABC}",
        "",
    ]
    for text in bad:
        with pytest.raises(BadInputError):
            parse_digest(text)
    with pytest.raises(BadInputError):
        parse_digest(None)  # type: ignore[arg-type]
    with pytest.raises(BadInputError):
        format_digest("sha256", "ABC")
    with pytest.raises(BadInputError):
        format_digest("md5", SHA256_ABC)


def test_single_file_path_digest(tmp_path: Path) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(b"abc")
    result = digest_path(f)
    assert result == PathDigest(SHA256_ABC, "sha256", 3, False, None)
    assert result.ref == f"sha256:{SHA256_ABC}"


def test_missing_path_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as info:
        digest_path(tmp_path / "nope")
    assert isinstance(info.value, BadInputError)
    assert "nope" in str(info.value)
    with pytest.raises(NotFoundError):
        hash_file(tmp_path / "nope")


# --- manifests -----------------------------------------------------------------------------------

PINNED_MANIFEST = (
    b'{"algorithm":"sha256","files":['
    b'{"digest":"' + SHA256_HELLO_NL.encode() + b'","path":"a.txt","size":6},'
    b'{"digest":"' + SHA256_EMPTY.encode() + b'","path":"dir/empty.bin","size":0},'
    b'{"digest":"' + SHA256_ABC.encode() + b'","path":"z","size":3}'
    b'],"version":"chainproof-manifest/v1"}'
)


def test_small_directory_manifest_bytes_are_pinned(make_tree) -> None:
    root = make_tree({"z": b"abc", "a.txt": b"hello\n", "dir/empty.bin": b""})
    (root / "empty-dir").mkdir()  # directories are not entries
    result = digest_path(root)
    assert result.is_directory
    assert result.manifest is not None
    assert result.manifest.canonical_bytes() == PINNED_MANIFEST
    assert result.digest == hashlib.sha256(PINNED_MANIFEST).hexdigest()
    assert result.digest == "07253bed560ed0850f18e0ea0e53b91412ae44970454bbd61a0cf719efa61a2b"
    assert result.ref == f"sha256:{result.digest}"
    assert result.size == 9
    assert Manifest.from_bytes(PINNED_MANIFEST) == result.manifest


def test_empty_directory(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    result = digest_path(root)
    assert result.manifest == Manifest("sha256", ())
    assert result.manifest.canonical_bytes() == (
        b'{"algorithm":"sha256","files":[],"version":"chainproof-manifest/v1"}'
    )
    assert result.size == 0


def test_ordering_is_by_utf8_bytes(make_tree) -> None:
    names = ["b", "a/b", "a-c", "B", "é", "z/a", "Z", "a0", "\u00e9t\u00e9", "\U0001f600", "\uffff"]
    root = make_tree({n: n.encode() for n in names})
    manifest = digest_path(root).manifest
    assert manifest is not None
    paths = [e.path for e in manifest.entries]
    assert paths == sorted(names, key=lambda p: p.encode("utf-8"))
    assert paths.index("a-c") < paths.index("a/b")  # '-' (0x2d) < '/' (0x2f)


def test_unicode_colon_and_odd_names(make_tree) -> None:
    files = {
        "weights:v1.bin": b"1",
        "dir:with:colons/x:0:10": b"2",
        "résumé/模型.safetensors": b"3",
        "spaces in name": b"4",
        "new\nline": b"5",
        '"quote"\\back': b"6",
        ".hidden": b"7",
    }
    root = make_tree(files)
    manifest = digest_path(root).manifest
    assert manifest is not None
    assert {e.path: e.digest for e in manifest.entries} == {
        p: hash_bytes(d) for p, d in files.items()
    }
    assert Manifest.from_bytes(manifest.canonical_bytes()) == manifest


def test_zero_byte_files_are_entries(make_tree) -> None:
    root = make_tree({"empty": b"", "sub/empty": b""})
    manifest = digest_path(root).manifest
    assert manifest is not None
    assert [(e.path, e.size, e.digest) for e in manifest.entries] == [
        ("empty", 0, SHA256_EMPTY),
        ("sub/empty", 0, SHA256_EMPTY),
    ]


def test_content_change_rename_and_addition_change_the_digest(make_tree) -> None:
    base = {"a": b"1", "b/c": b"2"}
    reference = digest_path(make_tree(base, "ref")).digest
    assert digest_path(make_tree(base, "same")).digest == reference  # name of root is irrelevant
    assert digest_path(make_tree({"a": b"1", "b/c": b"3"}, "flip")).digest != reference
    assert digest_path(make_tree({"a": b"1", "b/d": b"2"}, "rename")).digest != reference
    assert digest_path(make_tree({**base, "e": b""}, "extra")).digest != reference


@pytest.mark.parametrize("algorithm", ["sha256", "blake3"])
def test_parallel_equals_sequential(make_tree, algorithm: str) -> None:
    files = {f"d{i % 3}/f{i:02d}": os.urandom(i * 997) for i in range(40)}
    root = make_tree(files)
    sequential = digest_path(root, algorithm, workers=1)
    for workers in (2, 8, None):
        assert digest_path(root, algorithm, workers=workers) == sequential
    assert sequential.manifest is not None
    assert all(e.digest == hash_bytes(files[e.path], algorithm)
               for e in sequential.manifest.entries)


def test_blake3_directory(make_tree) -> None:
    root = make_tree({"a": b"abc", "b": b""})
    result = digest_path(root, "blake3")
    assert result.algorithm == "blake3"
    assert result.ref.startswith("blake3:")
    assert result.manifest is not None
    assert [e.digest for e in result.manifest.entries] == [BLAKE3_ABC, BLAKE3_EMPTY]
    assert result.digest == hash_bytes(result.manifest.canonical_bytes(), "blake3")
    assert result.digest != digest_path(root, "sha256").digest


def test_workers_must_be_positive(make_tree) -> None:
    root = make_tree({"a": b"1"})
    with pytest.raises(BadInputError):
        digest_path(root, workers=0)


def test_ignore_files_and_directories(make_tree) -> None:
    root = make_tree({"a": b"1", "model.sig": b"sig", ".git/HEAD": b"ref", "keep/.git": b"x"})
    result = digest_path(root, ignore=["model.sig", ".git/"])
    assert result.manifest is not None
    assert [e.path for e in result.manifest.entries] == ["a", "keep/.git"]
    # An ignored subtree may contain anything, even what would otherwise be refused.
    os.mkfifo(root / ".git" / "fifo")
    assert digest_path(root, ignore=["model.sig", ".git"]).digest == result.digest


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../b", "", "./a", "a//b"])
def test_bad_ignore_entries_are_refused(make_tree, bad: str) -> None:
    root = make_tree({"a": b"1"})
    with pytest.raises(BadInputError):
        digest_path(root, ignore=[bad])


def test_progress_is_off_when_not_a_terminal_and_works_when_forced(make_tree, capsys) -> None:
    root = make_tree({"a": b"1" * 1000, "b": b"2"})
    quiet = digest_path(root)
    assert capsys.readouterr().err == ""
    assert digest_path(root, progress=True) == quiet
    assert digest_path(root, progress=False) == quiet


# --- strict parsing of manifests -----------------------------------------------------------------


def _replace(old: bytes, new: bytes) -> bytes:
    assert old in PINNED_MANIFEST
    return PINNED_MANIFEST.replace(old, new, 1)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(PINNED_MANIFEST.replace(b",", b", "), id="whitespace"),
        pytest.param(PINNED_MANIFEST + b"\n", id="trailing-newline"),
        pytest.param(_replace(b'"path":"a.txt"', b'"path":"zz"'), id="unsorted"),
        pytest.param(_replace(b'"path":"a.txt"', b'"path":"dir/empty.bin"'), id="duplicate"),
        pytest.param(_replace(b'"path":"a.txt"', b'"path":"/a.txt"'), id="absolute"),
        pytest.param(_replace(b'"path":"a.txt"', b'"path":"../a.txt"'), id="dotdot"),
        pytest.param(_replace(b'"path":"a.txt"', b'"path":"./a.txt"'), id="dot"),
        pytest.param(_replace(b'"path":"a.txt"', b'"path":""'), id="empty-path"),
        pytest.param(_replace(SHA256_ABC.encode(), SHA256_ABC.upper().encode()), id="upper-hex"),
        pytest.param(_replace(SHA256_ABC.encode(), SHA256_ABC[:-2].encode()), id="short-hex"),
        pytest.param(_replace(SHA256_ABC.encode(), b"x" * 64), id="not-hex"),
        pytest.param(_replace(b'"size":3', b'"size":-3'), id="negative-size"),
        pytest.param(_replace(b'"size":3', b'"size":true'), id="bool-size"),
        pytest.param(_replace(b'"size":3', b'"size":3.0'), id="float-size"),
        pytest.param(_replace(b'"size":3', b'"size":"3"'), id="string-size"),
        pytest.param(_replace(b'"size":3', b'"size":' + str(2**60).encode()), id="huge-size"),
        pytest.param(_replace(b'"size":3', b'"size":3e0'), id="exponent-size"),
        pytest.param(_replace(b'"size":3', b'"size":NaN'), id="nan-size"),
        pytest.param(_replace(b'"algorithm":"sha256"', b'"algorithm":"md5"'), id="algorithm"),
        pytest.param(_replace(b"chainproof-manifest/v1", b"chainproof-manifest/v2"),
                     id="version"),
        pytest.param(_replace(b'{"algorithm"', b'{"algorithm":"sha256","algorithm"'),
                     id="duplicate-key"),
        pytest.param(_replace(b'"size":3}', b'"size":3,"x":1}'), id="extra-entry-key"),
        pytest.param(_replace(b'{"algorithm"', b'{"a":1,"algorithm"'), id="extra-key"),
        pytest.param(b"[]", id="not-object"),
        pytest.param(b"\xff", id="not-utf8"),
        pytest.param(b"", id="empty"),
        pytest.param(_replace(b'"path":"z"', b'"path":"dir/empty.bin/z"'), id="file-as-dir"),
    ],
)
def test_from_bytes_is_strict(data: bytes) -> None:
    with pytest.raises(MalformedFileError):
        Manifest.from_bytes(data)


def test_manifest_constructor_validates() -> None:
    entry = ManifestEntry("a", 1, SHA256_ABC)
    with pytest.raises(MalformedFileError):
        Manifest("sha256", (ManifestEntry("b", 1, SHA256_ABC), entry))
    with pytest.raises(MalformedFileError):
        Manifest("sha256", (entry, entry))
    with pytest.raises(MalformedFileError):
        ManifestEntry("a/../b", 1, SHA256_ABC)
    with pytest.raises(MalformedFileError):
        ManifestEntry("a", 1, "sha256:" + SHA256_ABC)
    built = Manifest.build("sha256", [ManifestEntry("é", 1, SHA256_ABC), entry])
    assert [e.path for e in built.entries] == ["a", "é"]


def test_progress_auto_needs_a_terminal_and_a_big_job(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    import chainproof.digest._tree as tree_mod

    class FakeTTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with tree_mod._progress(10**12, None, "x") as on_bytes:
        assert on_bytes is None  # piped: never
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    with tree_mod._progress(10**6, None, "x") as on_bytes:
        assert on_bytes is None  # a terminal, but done in well under a second
    with tree_mod._progress(10**12, None, "x") as on_bytes:
        assert on_bytes is not None
        on_bytes(1)


@pytest.mark.parametrize("size", [1024, 1024 * 1024, 2 * 1024 * 1024, 3 * 1024 * 1024])
def test_read_buffers_have_the_requested_size_and_are_writable(size: int) -> None:
    view = hashing_mod._new_buffer(size)
    assert len(view) == size
    assert not view.readonly
    view[-1] = 7
    assert view[-1] == 7


def test_from_bytes_fuzz_only_malformed_or_exact() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.integers(0, len(PINNED_MANIFEST) - 1), st.integers(0, 255),
           st.sampled_from(["replace", "insert", "delete"]))
    def check(index: int, byte: int, how: str) -> None:
        data = bytearray(PINNED_MANIFEST)
        if how == "replace":
            data[index] = byte
        elif how == "insert":
            data.insert(index, byte)
        else:
            del data[index]
        try:
            manifest = Manifest.from_bytes(bytes(data))
        except MalformedFileError:
            return
        # Whatever is accepted is exactly canonical: one directory, one byte string.
        assert manifest.canonical_bytes() == bytes(data)

    check()
