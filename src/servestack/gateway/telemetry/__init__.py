"""What the gateway tells about itself: Prometheus metrics, tracing, the usage ledger, the access log."""
