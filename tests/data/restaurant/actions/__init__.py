"""The restaurant project's action server code (`rasa run actions`), for tests/test_rasa_forms.py."""
