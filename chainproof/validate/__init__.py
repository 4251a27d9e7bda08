"""Data validation gate: schema contracts, drift against a reference, label and poisoning
suspicion, and feature-meaning checks. See docs/validation.md."""

from chainproof.validate._profile import ColumnProfile, NumericSketch, Profile, profile_dataset
from chainproof.validate.drift import (
    ColumnDrift,
    ColumnThresholds,
    DriftConfig,
    DriftReport,
    DriftTest,
    benjamini_hochberg,
    compare_profiles,
    detect_drift,
)
from chainproof.validate.features import (
    ColumnChange,
    FeatureMeaningReport,
    compare_feature_definitions,
    compare_feature_outputs,
    run_feature_definition,
)
from chainproof.validate.labels import (
    ClassShift,
    LabelConfig,
    LabelReport,
    LabelSuspect,
    class_shifts,
    confident_learning_suspects,
    find_label_issues,
    knn_agreement,
)
from chainproof.validate.report import (
    ValidationConfig,
    ValidationReport,
    profile_reference,
    validate_dataset,
)
from chainproof.validate.schema import (
    ColumnSchema,
    Schema,
    SchemaFinding,
    SchemaReport,
    check_schema,
    infer_schema,
)

__all__ = [
    "ClassShift",
    "ColumnChange",
    "ColumnDrift",
    "ColumnProfile",
    "ColumnSchema",
    "ColumnThresholds",
    "DriftConfig",
    "DriftReport",
    "DriftTest",
    "FeatureMeaningReport",
    "LabelConfig",
    "LabelReport",
    "LabelSuspect",
    "NumericSketch",
    "Profile",
    "Schema",
    "SchemaFinding",
    "SchemaReport",
    "ValidationConfig",
    "ValidationReport",
    "benjamini_hochberg",
    "check_schema",
    "class_shifts",
    "compare_feature_definitions",
    "compare_feature_outputs",
    "compare_profiles",
    "confident_learning_suspects",
    "detect_drift",
    "find_label_issues",
    "infer_schema",
    "knn_agreement",
    "profile_dataset",
    "profile_reference",
    "run_feature_definition",
    "validate_dataset",
]
