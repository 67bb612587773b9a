"""Admin: the customer view, statistics, previews, dry-run and definition apply."""
