"""Surveys: NPS, survey answers, preferences and unsubscribe."""
