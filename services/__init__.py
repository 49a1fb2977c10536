"""aidp's five services.

:data:`SERVICES` is also their start order: the gateway last, once everything it forwards
to is up (``aidp up`` starts them in this order; ``aidp serve`` accepts these names)."""

SERVICES = ("auth", "provisioner", "fetcher", "trainer", "gateway")
