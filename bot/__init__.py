"""Switchboard's domain core: messages, conversations, the engine and its stores.

The rule of this package: it imports no sibling package, no web framework, no
channel SDK and no index library. Everything outside reaches it through the
protocols in `bot.ports`.
"""
