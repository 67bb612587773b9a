"""Retention engine domain library (shared by every Lambda function through the common layer)."""
