"""Taking messages in and turning them into replies: the store-first inbox and the per-conversation processor."""
