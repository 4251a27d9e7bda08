"""The allowlist is data: exact matching, explicit wildcards, reasons, policy extension."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings
from pathlib import Path

import pytest
import scan_asm as a

from chainproof.errors import BadInputError, MalformedFileError
from chainproof.scan import allowlist_from_yaml, default_allowlist, load_allowlist, scan_path


def test_default_allowlist_entries_all_say_why() -> None:
    al = default_allowlist()
    assert al.version
    assert al.exact and al.patterns
    for e in al.exact:
        assert e.why and len(e.why) > 10, e.module
    for p in al.patterns:
        assert p.why and p.module.endswith(".*")


@pytest.mark.parametrize(
    ("module", "name", "allowed"),
    [
        ("collections", "OrderedDict", True),
        ("numpy.core.multiarray", "_reconstruct", True),
        ("numpy._core.multiarray", "_reconstruct", True),
        ("torch._utils", "_rebuild_tensor_v2", True),
        ("torch", "FloatStorage", True),
        ("sklearn.linear_model._logistic", "LogisticRegression", True),
        ("sklearn.tree._tree", "Tree", True),
        ("sklearn.ensemble._hist_gradient_boosting.binning", "_BinMapper", True),
        ("sklearn.neighbors._kd_tree", "newObj", True),
        ("torch.nn.modules.linear", "Linear", True),
        # exact means exact
        ("collections", "ordereddict", False),
        ("collections ", "OrderedDict", False),
        ("collections", "OrderedDict ", False),
        ("Collections", "OrderedDict", False),
        ("collections.abc", "OrderedDict", False),
        ("collections", "OrderedDict.fromkeys", False),
        ("numpy", "load", False),
        ("numpy.testing", "assert_equal", False),
        ("torch", "load", False),
        # wildcard abuse
        ("sklearn", "LogisticRegression", False),
        ("sklearnx.linear_model", "LogisticRegression", False),
        ("sklearn.linear_model", "logistic_regression_path", False),
        ("sklearn.utils._testing", "TempMemmap", False),
        ("sklearn.utils._testing", "something_dangerous", False),
        ("sklearn.datasets._openml", "OpenMLError", False),
        ("sklearn.externals.array_api_compat", "Numpy", False),
        ("sklearn.callback._transport", "Listener", False),
        ("sklearn.linear_model.tests.test_x", "Foo", False),
        ("sklearn.linear_model", "Path", False),
        ("sklearn.linear_model", "LogisticRegression.__init__", False),
        ("sklearn.linear_model", "Logistic\u0433Regression", False),
        ("sklearn..linear_model", "LogisticRegression", False),
        ("torch.nn.modules.module", "Module", False),
        ("torch.nn", "Linear", False),
    ],
)
def test_matching(module: str, name: str, allowed: bool) -> None:
    assert default_allowlist().allows(module, name) is allowed


XGB_POLICY = """
version: team-xgb-1
exact:
  - module: xgboost.sklearn
    names: [XGBClassifier]
    why: our gradient-boosted models; the class only stores params and a booster
  - module: xgboost.core
    names: [Booster]
    why: booster state is raw bytes handled by xgboost's own loader
"""


def test_policy_extension_via_yaml_file(tmp_path: Path) -> None:
    data = (
        a.proto(4)
        + a.stack_global("xgboost.sklearn", "XGBClassifier")
        + a.EMPTY_TUPLE
        + a.NEWOBJ
        + a.EMPTY_DICT
        + a.BUILD
        + a.STOP
    )
    p = tmp_path / "xgb.pkl"
    p.write_bytes(data)
    assert scan_path(p).files[0].verdict == "malicious"
    policy = tmp_path / "policy.yaml"
    policy.write_text(XGB_POLICY)
    al = load_allowlist(policy)
    assert al.version == f"{default_allowlist().version}+team-xgb-1"
    report = scan_path(p, allowlist=al)
    assert report.clean and report.to_dict()["allowlist_version"] == al.version
    # The extension does not open anything else up.
    q = tmp_path / "bad.pkl"
    q.write_bytes(a.call1("xgboost.core", "_load_lib", "x"))
    assert scan_path(q, allowlist=al).files[0].verdict == "malicious"


def test_programmatic_extension() -> None:
    al = default_allowlist().extended(allowlist_from_yaml(XGB_POLICY))
    assert al.allows("xgboost.core", "Booster") and not default_allowlist().allows(
        "xgboost.core", "Booster"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("exact:\n  - module: os\n    names: [system]\n", "why"),
        ("exact:\n  - module: 'sklearn.*'\n    names: [X]\n    why: because\n", "dotted"),
        ("exact:\n  - module: os\n    names: []\n    why: because\n", "names"),
        ("patterns:\n  - module: sklearn\n    name_regex: '.*'\n    why: x\n", "package.*"),
        ("patterns:\n  - module: 'a.*'\n    name_regex: '('\n    why: x\n", "regex"),
        ("- just a list\n", "mapping"),
        ("exact: [\n", "YAML"),
    ],
)
def test_bad_policy_files_are_rejected(text: str, message: str) -> None:
    with pytest.raises(MalformedFileError) as err:
        allowlist_from_yaml(text, source="policy.yaml")
    assert message in str(err.value)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError):
        load_allowlist(tmp_path / "nope.yaml")


# Objects that sklearn modules import from elsewhere and that are inert when constructed.
# Cython's own runtime types (_cyutility, View.MemoryView) are inert enums/memoryviews.
_HARMLESS_FOREIGN = (
    "numbers",
    "typing",
    "abc",
    "collections",
    "numpy",
    "scipy",
    "enum",
    "dataclasses",
    "warnings",
    "builtins",
    "functools",
    "_cyutility",
    "View",
)


@pytest.mark.slow
def test_sklearn_pattern_audit_against_installed_sklearn() -> None:
    """Every name the sklearn.* pattern admits must be sklearn's own class or inert.

    A new scikit-learn that re-exports, say, ``subprocess.Popen`` from a module makes this fail:
    the exclusions in default_allowlist.yaml then need a review.
    """
    sklearn = pytest.importorskip("sklearn")
    al = default_allowlist()
    (pattern,) = [p for p in al.patterns if p.module == "sklearn.*"]
    offenders: list[str] = []
    warnings.simplefilter("ignore")
    for info in pkgutil.walk_packages(sklearn.__path__, "sklearn."):
        if not pattern.matches(info.name, "Xx"):
            continue  # excluded module
        try:
            mod = importlib.import_module(info.name)
        except Exception:
            continue
        for attr, value in vars(mod).items():
            if not al.allows(info.name, attr):
                continue
            origin = "MODULE" if inspect.ismodule(value) else getattr(value, "__module__", None)
            if origin is None or not isinstance(origin, str):
                continue  # constants (floats, dicts); BUILD/SETITEM on them is a finding anyway
            if origin.startswith("sklearn") or origin.split(".")[0] in _HARMLESS_FOREIGN:
                continue
            offenders.append(f"{info.name}.{attr} -> {origin}")
    assert not offenders, offenders
