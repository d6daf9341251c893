"""Test-time adaptation: experts keep up with unlabeled traffic, behind collapse guards."""

from streamlearn.core.adapt.adapter import METHODS, RESET_REASONS, Adapter, AdaptReport

__all__ = ["METHODS", "RESET_REASONS", "AdaptReport", "Adapter"]
