"""Switchboard's domain core: messages, conversations, the engine and its stores.

The rule of this package: it imports no sibling package, no web framework, no
channel SDK and no index library. Everything outside reaches it through the
protocols in `bot.ports`.

Its rooms, each importing only the core (`messages`, `errors`, `outcome`, `ports`, `notifier`,
`language`) and the rooms below it:

    pipeline/   inbox and processor: store-first accept, one turn at a time per conversation
    dialogue/   the engine and its Rasa-format parts: NLU, forms, rules, the KB and handoff decisions
    stores/     conversations, outbox, agents, customers and report rollups on SQLite or PostgreSQL
    delivery/   channel capabilities and the outbox worker
    customers/  codes, privacy and email codes
    analytics/  reports, CSAT and the KB-gap report
"""
