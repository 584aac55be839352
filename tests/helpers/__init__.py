"""Helpers shared by tests (synthetic run directories)."""
