"""Ingestion: the Segment wire format and the ingestor that stores events and runs the engine."""
