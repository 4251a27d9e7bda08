"""``chainproof.step``: record a pipeline step from Python.

    with chainproof.step("train", inputs=["features@3", "labels@2"]) as s:
        X = pd.read_parquet(s.input("features"))
        ...
        s.output("model.joblib", kind="model", name="fraud-review-model")

Inputs are fetched and verified before the body runs; outputs are stored and registered when the
body finishes. If the body raises, the step is recorded as failed, no outputs are registered, and
the exception propagates.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from chainproof.errors import BadInputError
from chainproof.records.assets import AssetKind
from chainproof.records.names import DEFAULT_NAMESPACE, printable
from chainproof.records.steps import OutputSpec, now
from chainproof.service import Chainproof, StepResult


class StepRecorder:
    def __init__(self, cp: Chainproof, kind: str, inputs: Sequence[str], *,
                 namespace: str = DEFAULT_NAMESPACE, parameters: dict[str, Any] | None = None,
                 command: Sequence[str] = ()) -> None:
        self._cp = cp
        self.kind = kind
        self.namespace = namespace
        self.parameters = dict(parameters or {})
        self.command = list(command)
        self._inputs = [cp.resolve(ref, namespace=namespace) for ref in inputs]
        self._outputs: list[OutputSpec] = []
        self._started = ""
        self.result: StepResult | None = None

    def input(self, name: str) -> Path:
        """Local, verified path of the input called ``name`` (or ``name@version``)."""
        for version in self._inputs:
            if name in (version.name, version.ref):
                return self._cp.materialize(version)
        raise BadInputError(f"{name!r} is not an input of this step",
                            hint="inputs: " + ", ".join(v.ref for v in self._inputs))

    def output(self, path: str | Path, *, kind: str | AssetKind, name: str,
               namespace: str | None = None) -> None:
        asset_kind = AssetKind.parse(kind) if isinstance(kind, str) else kind
        self._outputs.append(OutputSpec(Path(path), asset_kind, name, namespace))

    def __enter__(self) -> StepRecorder:
        self._started = now()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        refs = [v.ref for v in self._inputs]
        if exc is not None:
            message = printable("".join(traceback.format_exception_only(exc)).strip())
            # The failure is recorded; the body's own exception is the one to show.
            with contextlib.suppress(BadInputError):
                self._cp.record_step(kind=self.kind, inputs=refs, outputs=[],
                                     command=self.command, parameters=self.parameters,
                                     started_at=self._started, error=message,
                                     namespace=self.namespace)
            return
        self.result = self._cp.record_step(kind=self.kind, inputs=refs, outputs=self._outputs,
                                           command=self.command, parameters=self.parameters,
                                           started_at=self._started, namespace=self.namespace)
