"""The marketer's language: conditions, rules, segments, templates and their lint (pure, no AWS)."""
