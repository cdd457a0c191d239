"""Getting an answer from the fleet: the per-request record, replica choice with retries, the one upstream client."""
