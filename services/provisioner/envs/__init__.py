"""Environment building: locks (uv) and node configuration (Ansible)."""
