"""The Textual chat application."""
