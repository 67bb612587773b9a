"""Messaging: send requests, the ledger, rendering, MIME, SMS, the sender and delivery feedback."""
