"""Model signing speed: chainproof.attest.openssf vs model_signing (sign key + verify key).

Builds a model directory of N files (default 4 x 1 GiB) under benchmarks/_work/, then signs and
verifies it with both implementations in the same run, interleaved so neither always gets the
warmer page cache, and prints seconds and the ratio. Both produce the same bundle format; the
model_signing run uses its Python API (what `model_signing sign key` / `verify key` call), so CLI
start-up time is not counted against it.

    .venv/bin/python benchmarks/sign_bench.py [--gib-per-file 1] [--files 4] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from chainproof.attest.keys import private_key_to_pem, public_key_to_pem
from chainproof.attest.openssf import sign_model, verify_model

WORK = Path(__file__).resolve().parent / "_work" / "sign_bench"
_CHUNK = 64 * 1024 * 1024


def _make_model(root: Path, files: int, size: int) -> None:
    root.mkdir(parents=True)
    block = os.urandom(_CHUNK)
    for i in range(files):
        with open(root / f"model-{i:05d}-of-{files:05d}.safetensors", "wb") as f:
            left = size
            # Vary each block's first bytes so files are distinct without paying urandom per byte.
            n = 0
            while left:
                chunk = block[: min(left, _CHUNK)]
                f.write(i.to_bytes(4, "big") + n.to_bytes(8, "big") + chunk[12:])
                left -= len(chunk)
                n += 1
    (root / "config.json").write_text('{"model_type": "bench"}')


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib-per-file", type=float, default=1.0)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool; best is reported")
    args = parser.parse_args()
    try:
        import model_signing
    except ImportError:
        print("model_signing is not installed (pip install 'model-signing>=1.1')", file=sys.stderr)
        return 2

    size = int(args.gib_per_file * 1024**3)
    total = size * args.files
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    free = shutil.disk_usage(WORK).free
    if free < total * 1.2:
        print(f"not enough disk: need {total / 1e9:.1f} GB, have {free / 1e9:.1f} GB",
              file=sys.stderr)
        return 2
    try:
        model = WORK / "model"
        print(f"writing {args.files} x {args.gib_per_file:g} GiB to {model} ...", flush=True)
        _make_model(model, args.files, size)
        key = ec.generate_private_key(ec.SECP256R1())
        priv, pub = WORK / "key.pem", WORK / "key.pub"
        priv.write_bytes(private_key_to_pem(key))
        pub.write_bytes(public_key_to_pem(key.public_key()))
        cp_sig, ms_sig = WORK / "chainproof.sig", WORK / "model_signing.sig"

        def cp_sign() -> None:
            sign_model(model, key, cp_sig)

        def cp_verify() -> None:
            verify_model(model, cp_sig, key.public_key())

        b3_sig = WORK / "chainproof-blake3.sig"

        def cp_sign_b3() -> None:
            sign_model(model, key, b3_sig, hash_type="blake3")

        def cp_verify_b3() -> None:
            verify_model(model, b3_sig, key.public_key())

        def ms_sign() -> None:
            model_signing.signing.Config().use_elliptic_key_signer(
                private_key=priv
            ).set_hashing_config(model_signing.hashing.Config()).sign(model, ms_sig)

        def ms_verify() -> None:
            model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(
                model, ms_sig
            )

        best: dict[str, float] = {}
        for _ in range(args.repeat):
            # Interleaved: each tool runs once right after the other has read the same bytes.
            for name, fn in (
                ("model_signing sign", ms_sign),
                ("chainproof sign", cp_sign),
                ("chainproof verify", cp_verify),
                ("model_signing verify", ms_verify),
                ("chainproof sign blake3", cp_sign_b3),
                ("chainproof verify blake3", cp_verify_b3),
            ):
                t = _timed(fn)
                best[name] = min(t, best.get(name, t))
        # Cross-check: each tool accepts the other's signatures of this very model.
        verify_model(model, ms_sig, key.public_key())
        for sig in (cp_sig, b3_sig):
            model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(
                model, sig
            )
        gb = total / 1e9
        print(f"model: {args.files} files x {args.gib_per_file:g} GiB = {gb:.2f} GB, "
              f"{os.cpu_count()} CPUs, best of {args.repeat}")
        for name in ("chainproof sign", "model_signing sign", "chainproof verify",
                     "model_signing verify", "chainproof sign blake3", "chainproof verify blake3"):
            print(f"  {name:26s} {best[name]:8.2f} s  {gb / best[name]:6.2f} GB/s")
        cp = best["chainproof sign"] + best["chainproof verify"]
        ms = best["model_signing sign"] + best["model_signing verify"]
        print(f"  sign ratio   (model_signing / chainproof): "
              f"{best['model_signing sign'] / best['chainproof sign']:.2f}x")
        print(f"  verify ratio (model_signing / chainproof): "
              f"{best['model_signing verify'] / best['chainproof verify']:.2f}x")
        print(f"  sign+verify, both sha256: chainproof {cp:.2f} s vs model_signing {ms:.2f} s "
              f"-> ratio {ms / cp:.2f}x")
        b3 = best["chainproof sign blake3"] + best["chainproof verify blake3"]
        print(f"  sign+verify, chainproof blake3 (model_signing>=1.1 verifies it) vs "
              f"model_signing sha256 default: {b3:.2f} s vs {ms:.2f} s -> ratio {ms / b3:.2f}x")
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
