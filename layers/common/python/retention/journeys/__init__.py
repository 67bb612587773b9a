"""Journeys: the pure engine that turns an event and a profile into effects."""
