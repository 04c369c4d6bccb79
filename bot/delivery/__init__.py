"""Getting replies out: each channel's capabilities and the worker that sends the outbox."""
