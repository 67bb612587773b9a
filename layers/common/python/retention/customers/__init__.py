"""Customers: the profile model and the one owner of the profile table's keys."""
