"""Node drivers, one module per provider; see :mod:`.base` for the contract.

Modules are imported when a driver is first needed, so a provider's dependencies (an HTTP
client, terraform) cost nothing to runs that do not use it.
"""

from __future__ import annotations

from services.provisioner.drivers.base import Capabilities, Node, NodeDriver, RunContext

__all__ = ["Capabilities", "Node", "NodeDriver", "RunContext"]
