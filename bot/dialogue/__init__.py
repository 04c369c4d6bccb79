"""The turn decision on Rasa-format files: domain, NLU, entities, forms, rules and stories, and the
KB and handoff decisions."""
