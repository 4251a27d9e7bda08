"""Fixtures: the governed pipeline."""

from pipeline_fixtures import pipe  # noqa: F401
