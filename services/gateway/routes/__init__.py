"""Routers of the public API (docs/design.md §5), one module per resource."""
