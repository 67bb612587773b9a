"""The `retention` CLI (dev only, outside the Lambda layer): an HTTP client of the admin API."""
