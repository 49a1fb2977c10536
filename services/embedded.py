"""Embedded mode: all five services in one process (``aidp up``, ``python -m services``).

This is the composition root, not a service: it builds each service's app with the same
settings (SQLite files under the data dir, the ``memory://`` bus, one local OpenBao that it
starts and unseals itself, the local node driver), registers the internal APIs in process
(``inproc://<name>``), runs every lifespan, and serves the gateway on ``host:port``.
Each service talks to the local OpenBao with a token of its own least-privilege policy
(``shared.secrets.policies``), renewed hourly; no root token exists at run time.
A restart on the same data dir keeps every project, secret and cached artifact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from services import SERVICES
from shared.bus import Bus, create_bus
from shared.hardening import harden_process
from shared.internal import register_inproc, unregister_inproc
from shared.secrets import KeyService, SecretStore, connect_vault
from shared.settings import BaseServiceSettings
from shared.telemetry import setup_logging

__all__ = ["Platform", "run_platform", "serve"]

log = logging.getLogger("aidp.embedded")


#: How often the embedded platform renews the services' periodic Vault tokens.
TOKEN_RENEW_SECONDS = 3600.0
#: How often embedded mode checks that its OpenBao is up and unsealed.
VAULT_WATCH_SECONDS = 2.0


@dataclass
class Platform:
    """The running embedded platform: every service's app, sharing one bus; each service
    has its own Vault client (``vaults[name]``), scoped to its policy."""

    apps: dict[str, FastAPI]
    bus: Bus
    vaults: dict[str, tuple[SecretStore, KeyService]]
    data_dir: Path

    @property
    def gateway(self) -> FastAPI:
        return self.apps["gateway"]

    def gateway_settings(self) -> object:
        runtime = getattr(self.gateway.state, "runtime", None)
        return getattr(runtime, "settings", None)


def _settings_for(name: str, data_dir: Path, bus_url: str, bind_host: str) -> BaseServiceSettings:
    import importlib

    module = importlib.import_module(f"services.{name}.settings")
    cls = getattr(module, f"{name.capitalize()}Settings")
    overrides: dict[str, object] = {"data_dir": data_dir, "bus_url": bus_url, "mode": "embedded"}
    if "public_bind_host" in cls.model_fields:  # auth: loopback decides registration defaults
        overrides["public_bind_host"] = bind_host
    return cls(**overrides)  # type: ignore[no-any-return]


def _create_app(
    name: str, settings: BaseServiceSettings, bus: Bus, vault: tuple[SecretStore, KeyService]
) -> FastAPI:
    import importlib

    module = importlib.import_module(f"services.{name}.main")
    return module.create_app(settings, bus=bus, vault=vault)  # type: ignore[no-any-return]


@asynccontextmanager
async def platform(
    data_dir: Path, *, bus_url: str = "memory://aidp", bind_host: str = "127.0.0.1"
) -> AsyncIterator[Platform]:
    """Start every service in this process; stop them in reverse order on exit.
    ``bind_host`` is where the gateway will listen (auth's loopback defaults follow it)."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    base = BaseServiceSettings(data_dir=data_dir, mode="embedded", service_name="embedded")
    setup_logging(base.log_level, json_lines=base.log_json)
    settings = {name: _settings_for(name, data_dir, bus_url, bind_host) for name in SERVICES}
    async with AsyncExitStack() as stack:
        if base.vault_addr is None:
            vaults = await _local_vaults(stack, data_dir, base, settings)
        else:  # an external Vault named in the settings: its credentials serve every service
            shared_vault = await asyncio.to_thread(connect_vault, base)
            vaults = dict.fromkeys(SERVICES, shared_vault)
        bus = create_bus(bus_url)
        await bus.connect()
        stack.push_async_callback(bus.close)
        apps: dict[str, FastAPI] = {}
        for name in SERVICES:
            app = _create_app(name, settings[name], bus, vaults[name])
            apps[name] = app
            register_inproc(name, app)
            stack.callback(unregister_inproc, name)
        for name in SERVICES:
            await stack.enter_async_context(apps[name].router.lifespan_context(apps[name]))
            log.info("service %s is up", name)
        yield Platform(apps=apps, bus=bus, vaults=vaults, data_dir=data_dir)


async def _local_vaults(
    stack: AsyncExitStack,
    data_dir: Path,
    base: BaseServiceSettings,
    settings: dict[str, BaseServiceSettings],
) -> dict[str, tuple[SecretStore, KeyService]]:
    """Start (or attach to) the local OpenBao; one client per service with its own token."""
    from shared.secrets.local import LocalOpenBao
    from shared.secrets.policies import PolicyParams
    from shared.secrets.vault import VaultClient

    local_bao = LocalOpenBao(data_dir / "openbao")
    if not local_bao.is_running():
        # The OpenBao this platform starts stops with it; its state stays on disk. (Someone
        # else's server on this data dir is attached to and left running.)
        stack.callback(local_bao.stop)
    params = PolicyParams(
        transit_key=base.transit_key,
        signing_secret=str(getattr(settings["auth"], "signing_secret_name", "auth-signing-keys")),
        oidc_secret=str(getattr(settings["auth"], "oidc_secret_name", "oidc")),
    )
    local = await asyncio.to_thread(local_bao.ensure_running, params)
    vaults: dict[str, tuple[SecretStore, KeyService]] = {}
    for name in SERVICES:
        client = VaultClient(local.addr, token=local.token_for(name))
        vaults[name] = (client, client)

    async def renew_forever() -> None:
        while True:
            await asyncio.sleep(TOKEN_RENEW_SECONDS)
            try:
                await asyncio.to_thread(local.renew)
            except Exception:  # the vault is down for a moment: the next round tries again
                log.warning("vault: renewing the service tokens failed", exc_info=True)

    async def keep_unsealed() -> None:
        """OpenBao restarted comes back sealed (or not at all, if it died): start and unseal
        it again, so secrets and keys come back within a few seconds by themselves."""
        while True:
            await asyncio.sleep(VAULT_WATCH_SECONDS)
            try:
                done = await asyncio.to_thread(local_bao.heal)
            except Exception:
                log.warning("vault: the local OpenBao is down and could not be restarted yet")
                continue
            if done:
                log.warning("vault: the local OpenBao was %s", done)

    renewer = asyncio.create_task(renew_forever(), name="vault-token-renewal")
    watcher = asyncio.create_task(keep_unsealed(), name="vault-watch")

    async def stop_renewing() -> None:  # before the OpenBao stops (the stack unwinds LIFO)
        for task in (renewer, watcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    stack.push_async_callback(stop_renewing)
    return vaults


async def run_platform(
    *,
    host: str,
    port: int,
    data_dir: Path,
    on_ready: Callable[[str], Awaitable[None] | None] | None = None,
) -> None:
    """Run the embedded platform and serve the gateway until interrupted."""
    async with platform(data_dir, bind_host=host) as running:
        tls_cert, tls_key = os.environ.get("AIDP_TLS_CERT"), os.environ.get("AIDP_TLS_KEY")
        trusted_proxies = gateway_trusted_proxies(running.gateway_settings())
        config = uvicorn.Config(
            running.gateway,
            host=host,
            port=port,
            lifespan="off",  # lifespans already run above, in dependency order
            log_config=None,
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
            ws_ping_interval=20,
            ws_per_message_deflate=gateway_ws_deflate(running.gateway_settings()),
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=trusted_proxies,
        )
        server = uvicorn.Server(config)
        scheme = "https" if tls_cert else "http"
        address = f"{scheme}://{host}:{port}/"

        async def announce() -> None:
            while not server.started:
                await asyncio.sleep(0.05)
            print(
                f"aidp is up: web UI and API at {address}  (data: {running.data_dir})", flush=True
            )
            if on_ready is not None:
                result = on_ready(address)
                if result is not None:
                    await result

        announcer = asyncio.create_task(announce())
        # uvicorn re-raises a captured SIGTERM once it has stopped serving; with the default
        # handler that would kill the process before the services' lifespans (and the local
        # OpenBao) are shut down, so turn it into KeyboardInterrupt and unwind normally.
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            await server.serve()
        finally:
            signal.signal(signal.SIGTERM, previous)
            announcer.cancel()


def gateway_trusted_proxies(gateway_settings: object) -> str:
    """uvicorn's ``forwarded_allow_ips``: X-Forwarded-For/-Proto are believed only from the
    proxies in the gateway's ``forwarded_allow_ips``; by default from no one (uvicorn's own
    default trusts 127.0.0.1, which lets any local client pick its address and dodge the
    per-address login limit)."""
    return str(getattr(gateway_settings, "forwarded_allow_ips", None) or "")


def gateway_ws_deflate(gateway_settings: object) -> bool:
    """uvicorn's ``ws_per_message_deflate``: the gateway's setting, off by default (uvicorn
    turns it on; compressing every status frame per client is most of fan-out's CPU)."""
    return bool(getattr(gateway_settings, "ws_per_message_deflate", False))


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def serve(*, host: str = "127.0.0.1", port: int = 8000, data_dir: Path | None = None) -> None:
    """Blocking entry point of ``aidp up``."""
    data_dir = data_dir or Path(os.environ.get("AIDP_DATA_DIR", str(Path.home() / ".aidp")))
    harden_process(data_dir)
    try:
        asyncio.run(run_platform(host=host, port=port, data_dir=data_dir))
    except KeyboardInterrupt:
        pass
