"""Who may send a request, and when: API keys, their limits, per-model queues."""
