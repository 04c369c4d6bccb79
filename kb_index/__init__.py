"""Knowledge-base indexing: Markdown articles -> chunks -> embeddings -> FAISS snapshots.

Builds offline, loads read-only, and answers with `bot.messages.Passage` objects.
"""
