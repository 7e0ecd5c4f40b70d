"""Handlers that exist only for tests, loaded by module path like a user's own handler."""
