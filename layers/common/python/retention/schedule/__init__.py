"""Schedule: the due index, the minute tick, segment recompute and broadcasts."""
