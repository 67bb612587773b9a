"""Shared plumbing: clock, errors, settings, runtime dependencies, DynamoDB and HTTP helpers,
YAML I/O, signed tokens and the configuration store."""
