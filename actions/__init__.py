"""Custom actions: Switchboard's examples, and the ways to run any rasa-sdk action."""
