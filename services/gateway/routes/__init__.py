"""Routers of the public API (DESIGN §5), one module per resource."""
