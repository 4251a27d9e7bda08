"""Operations built only from the primitives (``resolve``, ``materialize``, ``add``,
``record_step``), shared by the embedded :class:`~chainproof.service.Chainproof` and the team
server's :class:`~chainproof.client.RemoteChainproof`: run a command as a step, record a report,
validate a dataset. Written once so both paths behave identically."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import rfc8785

from chainproof.errors import BadInputError, StepFailedError
from chainproof.records.assets import AssetKind, AssetVersion
from chainproof.records.names import (
    DEFAULT_NAMESPACE,
    check_kind,
    check_name,
    check_text,
    parse_ref,
    printable,
)
from chainproof.records.steps import OutputSpec, now


class Workflows:
    """Mixin: needs ``resolve``, ``materialize``, ``add``, ``record_step`` and ``settings``."""

    settings: Any

    def resolve(self, ref: str, *, namespace: str | None = None) -> AssetVersion:
        raise NotImplementedError

    def materialize(self, version: AssetVersion | str, dest: Path | None = None) -> Path:
        raise NotImplementedError

    def add(self, path: Path | str, *, kind: str | AssetKind, name: str,
            namespace: str = DEFAULT_NAMESPACE, media_type: str | None = None) -> Any:
        raise NotImplementedError

    def record_step(self, *, kind: str, inputs: Sequence[Any], outputs: Sequence[Any],
                    command: Sequence[str] = (), parameters: dict[str, Any] | None = None,
                    started_at: str, ended_at: str | None = None, error: str | None = None,
                    namespace: str = DEFAULT_NAMESPACE, cwd: Path | None = None) -> Any:
        raise NotImplementedError

    def run(self, *, kind: str, command: Sequence[str], inputs: Sequence[str] = (),
            outputs: Sequence[Any] = (), code: Sequence[Path] = (),
            namespace: str = DEFAULT_NAMESPACE, parameters: dict[str, Any] | None = None,
            cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
        """Run ``command``, record it as a step with its inputs, and store its outputs.

        Inputs are materialised (verified) first; the command sees each input's local path in
        ``CHAINPROOF_INPUT_<NAME>`` and ``{input:NAME}`` placeholders in its arguments.
        """
        if not command:
            raise BadInputError("no command to run", hint="put the command after `--`")
        code_refs = []
        for path in code:
            added = self.add(path, kind=AssetKind.CODE, name=code_name(path),
                             namespace=namespace)
            code_refs.append(added.version.ref)
        all_inputs = [*inputs, *code_refs]
        run_env = dict(os.environ if env is None else env)
        substitutions: dict[str, str] = {}
        for ref in all_inputs:
            version = self.resolve(ref, namespace=namespace)
            local = self.materialize(version)
            key = "CHAINPROOF_INPUT_" + "".join(c if c.isalnum() else "_"
                                                for c in version.name.upper())
            run_env[key] = str(local)
            substitutions[f"{{input:{version.name}}}"] = str(local)
        argv = [substitute(arg, substitutions) for arg in command]
        for word in argv:  # refused before it runs, not after (the record would refuse it)
            check_text(word, what="a word of the command", limit=10_000)
        before = {spec.path: _stat(spec.path) for spec in outputs}
        started = now()
        error = None
        exit_status: int | None = None
        try:
            done = subprocess.run(argv, cwd=cwd, env=run_env, check=False)
            if done.returncode != 0:
                error = f"command exited with status {done.returncode}: {' '.join(argv)}"
                exit_status = done.returncode
        except OSError as exc:
            error = printable(f"command could not start: {exc}")
            exit_status = 127
        if error is None:
            # An output must be written by this step: a file left over from an earlier run,
            # untouched by the command, is not its output (no stale model registered).
            stale = [str(p) for p, seen in before.items() if seen is not None
                     and seen == _stat(p)]
            if stale:
                error = ("outputs were not written by the command (left over from before it "
                         "started): " + ", ".join(stale))
        try:
            return self.record_step(kind=kind, inputs=all_inputs, outputs=outputs,
                                    command=argv, parameters=parameters, started_at=started,
                                    error=error, namespace=namespace, cwd=cwd)
        except StepFailedError as exc:
            exc.exit_status = exit_status
            raise

    def record_report(self, *, report_kind: str, subjects: Sequence[str], report: dict[str, Any],
                      passed: bool, name: str, namespace: str | None = None) -> AssetVersion:
        """Store a report about ``subjects`` as a signed ``report`` asset produced by a step
        that consumed them, so it sits in their lineage and can serve as promotion evidence."""
        check_kind(report_kind, what="report kind")
        ns = namespace or (parse_ref(subjects[0]).namespace if subjects else DEFAULT_NAMESPACE)
        document: dict[str, Any] = {"report_kind": report_kind, "passed": passed,
                    "subjects": [{"ref": r, "digest": self.resolve(r, namespace=ns).digest}
                                 for r in subjects],
                    "report": report}
        with tempfile.TemporaryDirectory(prefix="chainproof-report-") as scratch:
            path = Path(scratch) / f"{name}.json"
            path.write_bytes(rfc8785.dumps(document))
            result = self.record_step(kind=report_kind, inputs=list(subjects),
                                      outputs=[OutputSpec(path, AssetKind.REPORT, name, ns)],
                                      command=["chainproof", report_kind, *subjects],
                                      parameters={"passed": passed}, started_at=now(),
                                      namespace=ns)
        return result.outputs[0]

    def validate(self, ref: str, *, reference: str | None = None, schema: str | None = None,
                 label_column: str | None = None, key_columns: Sequence[str] = (),
                 record: bool = True, thresholds: Mapping[str, float] | None = None,
                 block_on: str = "fail") -> tuple[Any, AssetVersion | None, str | None]:
        """Validate a dataset version (schema, drift, labels) against a reference version.

        The reference defaults to the dataset's previous version. A schema contract may declare
        the label and key columns and thresholds (used when none are given here). The
        reference's profile is computed once per digest, label and key columns, and cached.
        With ``record`` the report becomes a signed ``validation`` report asset in the
        dataset's lineage (promotion evidence, judged by the gate with its own ``block_on``).
        Returns (report, report asset, reference ref). BadInputError for an unknown threshold
        or block_on (see docs/validation.md)."""
        # Imported here, not at the top, for start-up time only (not to dodge a cycle):
        # validate pulls in pandas and scipy (~1.3 s), which no other command needs.
        from chainproof.validate import (
            Profile,
            contract_settings,
            profile_reference,
            validate_dataset,
        )

        current = self.resolve(ref)
        if reference is None and current.version > 1:
            reference = f"{current.namespace}/{current.name}@{current.version - 1}"
        schema_arg: Any = None
        if schema is not None:
            schema_arg = (Path(schema) if Path(schema).exists()
                          else self.materialize(self.resolve(schema)))
        # The contract's label and key columns reach the reference profile too.
        label, keys = contract_settings(schema_arg, label_column=label_column,
                                        key_columns=tuple(key_columns))
        ref_profile = None
        reference_version = None
        if reference is not None:
            reference_version = self.resolve(reference)
            cache = self.settings.cache_dir / "profiles" / (
                f"{reference_version.hexdigest}-{label or ''}-{','.join(keys)}"
                f"-{_PROFILE_FORMAT}.profile")
            if cache.exists():
                ref_profile = Profile.from_bytes(cache.read_bytes())
            else:
                ref_profile = profile_reference(self.materialize(reference_version),
                                                label_column=label, key_columns=keys)
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(".tmp")
                tmp.write_bytes(ref_profile.to_bytes())
                os.replace(tmp, cache)
        report = validate_dataset(
            self.materialize(current), reference=ref_profile, schema=schema_arg,
            label_column=label, key_columns=keys, thresholds=thresholds, block_on=block_on,
            dataset_name=current.ref, dataset_digest=current.digest,
            reference_name=reference_version.ref if reference_version else None,
            reference_digest=reference_version.digest if reference_version else None)
        recorded = None
        if record:
            subjects = [current.ref] + ([reference_version.ref] if reference_version else [])
            recorded = self.record_report(report_kind="validation", subjects=subjects,
                                          report=report.to_dict(), passed=report.passed,
                                          name=f"{current.name}-validation",
                                          namespace=current.namespace)
        return report, recorded, reference_version.ref if reference_version else None


#: Bumped when cached reference profiles must be rebuilt (v2: label statistics, key columns).
_PROFILE_FORMAT = "v2"


def _stat(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime in ns) of a file, or of a directory's newest entry; None if absent."""
    try:
        if path.is_dir():
            stats = [p.stat() for p in path.rglob("*")] or [path.stat()]
            newest = max(stats, key=lambda st: st.st_mtime_ns)
            return (newest.st_ino, sum(st.st_size for st in stats), newest.st_mtime_ns)
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def code_name(path: Path) -> str:
    name = path.resolve().name.replace(" ", "-") or "code"
    return check_name(name if name[0].isalnum() else "code-" + name.lstrip("._-"))


def substitute(arg: str, table: dict[str, str]) -> str:
    for key, value in table.items():
        arg = arg.replace(key, value)
    return arg
