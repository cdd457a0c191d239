"""The engines as the gateway sees them: endpoints, pools, circuit breakers, health and load watch, routing policies."""
