"""The auth service: Users, passwords, tokens, roles."""
