"""PyTorch checkpoints made here scan clean; an injected payload does not (needs torch)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from chainproof.errors import ScanFindingError
from chainproof.scan import safe_load, scan_path

torch = pytest.importorskip("torch", reason="torch is not importable: PyTorch checkpoints untested")


def _net() -> Any:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8, 3),
        nn.BatchNorm1d(3),
        nn.LayerNorm(3),
        nn.Dropout(0.1),
    )


@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize("what", ["state_dict", "full_module", "checkpoint"])
def test_torch_checkpoints_scan_clean(tmp_path: Path, layout: str, what: str) -> None:
    net = _net()
    obj: Any = {
        "state_dict": net.state_dict(),
        "full_module": net,
        "checkpoint": {
            "epoch": 3,
            "model": net.state_dict(),
            "optim": torch.optim.Adam(net.parameters()).state_dict(),
            "bf16": torch.arange(3, dtype=torch.bfloat16),
        },
    }[what]
    p = tmp_path / f"{what}.pt"
    torch.save(obj, p, _use_new_zipfile_serialization=(layout == "zip"))
    result = scan_path(p).files[0]
    assert result.verdict == "clean", (result.findings, result.error)
    assert result.format == ("pytorch-zip" if layout == "zip" else "pytorch-legacy")
    if what != "full_module":
        loaded = safe_load(p)
        assert isinstance(loaded, dict)


def test_torch_checkpoint_with_injected_payload(tmp_path: Path) -> None:
    class Sneaky(torch.nn.Module):  # type: ignore[name-defined]
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    p = tmp_path / "bad.pt"
    torch.save({"w": torch.ones(2), "x": Sneaky()}, p)
    result = scan_path(p).files[0]
    assert result.verdict == "malicious"
    assert result.findings[0].file.endswith("data.pkl")
    with pytest.raises(ScanFindingError):
        safe_load(p)


@pytest.mark.slow
def test_torch_nn_modules_pattern_audit() -> None:
    """Names the torch.nn.modules.* pattern admits are torch's own inert classes."""
    import importlib
    import inspect
    import pkgutil
    import warnings

    import torch.nn.modules as tm

    from chainproof.scan import default_allowlist

    al = default_allowlist()
    harmless = ("torch.nn", "torch.autograd", "torch.utils.hooks", "typing", "collections")
    offenders = []
    warnings.simplefilter("ignore")
    for info in pkgutil.walk_packages(tm.__path__, "torch.nn.modules."):
        try:
            mod = importlib.import_module(info.name)
        except Exception:
            continue
        for attr, value in vars(mod).items():
            if not al.allows(info.name, attr):
                continue
            origin = "MODULE" if inspect.ismodule(value) else getattr(value, "__module__", None)
            if isinstance(origin, str) and not origin.startswith(harmless) and origin != "torch":
                offenders.append(f"{info.name}.{attr} -> {origin}")
    assert not offenders, offenders
