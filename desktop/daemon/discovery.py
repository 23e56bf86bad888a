"""Finding the household's nodes: zeroconf on the LAN, introducers for devices elsewhere.

LAN: this device's node is registered as `_permacloud._tcp.local.` with a signed announcement in
its TXT record (see `desktop.net.announce`), refreshed every few minutes so receivers always see a
fresh timestamp. Every announcement seen is checked (signature, node ID, freshness, household
tag, pinned identity) before its node enters the index as source "lan"; the rest is logged once
and ignored. Only the signed addresses are used, never the unsigned A records, and the node ID
is the TLS pin, so a LAN attacker can at worst hide a node, not stand in for one.

Introducers: `introducers = ["NODEID@HOST:PORT"]` in the config names nodes of the household
reachable from elsewhere. They join the known nodes (source "introducer"); the account log,
which replication already reads from the known nodes, then brings every household node
("node" records). The design relies on the introducer holding the account log: true while
the household has at most `replication.REPLICAS` nodes, or whenever the introducer is among the
account log's rendezvous nodes; with a bigger household list several introducers.

python-zeroconf is synchronous with its own thread: it is driven through `trio.to_thread`, and
its browser callbacks hand names to trio with `TrioToken.run_sync_soon` (never blocking it).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import trio
import zeroconf
from zeroconf import (
    InterfaceChoice,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf._utils.net import get_all_addresses

from desktop.core.errors import PermaCloudError
from desktop.daemon.config import parse_introducer
from desktop.net.announce import (
    AnnouncementRejected,
    Household,
    check_announcement,
    from_properties,
    make_announcement,
    tag_key,
    to_properties,
)
from desktop.net.nodes_file import parse_address

if TYPE_CHECKING:
    from desktop.daemon.service import Daemon

logger = logging.getLogger(__name__)

SERVICE_TYPE = "_permacloud._tcp.local."
INTERFACES_ENV = "PERMACLOUD_ZEROCONF_INTERFACES"
REANNOUNCE_INTERVAL = 120.0
RESOLVE_TIMEOUT_MS = 3000
MAX_LOGGED = 1000
_WILDCARDS = ("0.0.0.0", "::", "")


def zeroconf_interfaces() -> list[str] | InterfaceChoice:
    """`PERMACLOUD_ZEROCONF_INTERFACES=127.0.0.1` (comma list) pins zeroconf, e.g. to loopback."""
    raw = os.environ.get(INTERFACES_ENV, "").strip()
    if not raw:
        return InterfaceChoice.All
    return [part.strip() for part in raw.split(",") if part.strip()]


def open_zeroconf() -> Zeroconf:
    interfaces = zeroconf_interfaces()
    if isinstance(interfaces, list):
        v4 = all(ipaddress.ip_address(i).version == 4 for i in interfaces)
        return Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only if v4 else None)
    return Zeroconf(interfaces=interfaces)


def announced_addresses(node_address: str) -> list[str]:
    """What the node serves at: its listen address, or each interface's when it listens on all."""
    host, port = parse_address(node_address)
    if host not in _WILDCARDS:
        return [node_address]
    interfaces = zeroconf_interfaces()
    hosts = interfaces if isinstance(interfaces, list) else get_all_addresses()
    found = [h for h in hosts if not ipaddress.ip_address(h).is_loopback]
    return [f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in found[:8]]


async def add_introducers(daemon: Daemon) -> None:
    """Seed the known nodes with the configured introducers (the config only seeds: an address
    learned later from the LAN or the account log is not overwritten, unless it came from here)."""
    own = daemon.keys.device_key.node_id
    sources = {row.id: row.source for row in await daemon.db(daemon.index.nodes)}
    added = 0
    for text in daemon.config.introducers:
        known = parse_introducer(text)
        if known.id == own or sources.get(known.id, "introducer") != "introducer":
            continue
        await daemon.db(daemon.index.upsert_node, known.id, known.address, "introducer")
        added += 1
    if added:
        logger.info("added %d introducer node(s)", added)
        await daemon.refresh_nodes()
        daemon.wake_replication()


class LanDiscovery:
    """One zeroconf instance: announce this node, accept verified household announcements."""

    def __init__(self, daemon: Daemon, zc: Zeroconf) -> None:
        self.daemon = daemon
        self.zc = zc
        self.tag_key = tag_key(daemon.keys.account_secret)
        self.own_id = daemon.keys.device_key.node_id
        self.accepted: dict[str, str] = {}  # node ID -> address last put in the index
        self._logged: set[tuple[str, str]] = set()
        self._send, self._receive = trio.open_memory_channel[str](256)
        self._pending: set[str] = set()

    # --- announcing -------------------------------------------------------------------------

    def service_info(self) -> ServiceInfo | None:
        addresses = announced_addresses(self.daemon.node_address())
        if not addresses:
            logger.warning("LAN discovery: no address to announce for this node")
            return None
        keys = self.daemon.keys
        announcement = make_announcement(
            keys.device_key, addresses, self.tag_key, keys.account_id, time.time()
        )
        hosts = [parse_address(a)[0] for a in announcement.addresses]
        return ServiceInfo(
            SERVICE_TYPE,
            f"{self.own_id}.{SERVICE_TYPE}",
            port=parse_address(announcement.addresses[0])[1],
            properties=to_properties(announcement),
            server=f"{self.own_id}.local.",
            addresses=[ipaddress.ip_address(h).packed for h in hosts],
        )

    async def announce_loop(self) -> None:
        info = self.service_info()
        if info is None:
            return
        await trio.to_thread.run_sync(self.zc.register_service, info)
        logger.info("announcing node %s on the LAN", self.own_id[:8])
        while True:
            await trio.sleep(REANNOUNCE_INTERVAL)
            info = self.service_info()
            if info is not None:
                await trio.to_thread.run_sync(self.zc.update_service, info)

    # --- browsing ---------------------------------------------------------------------------

    def browse(self) -> ServiceBrowser:
        token = trio.lowlevel.current_trio_token()

        def enqueue(name: str) -> None:  # runs in trio
            if name in self._pending:
                return
            try:
                self._send.send_nowait(name)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                return
            self._pending.add(name)

        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:  # runs in zeroconf's thread
            if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(enqueue, name)

        return ServiceBrowser(self.zc, SERVICE_TYPE, handlers=[on_change])

    async def resolve_loop(self) -> None:
        async for name in self._receive:
            self._pending.discard(name)
            info = await trio.to_thread.run_sync(
                self.zc.get_service_info, SERVICE_TYPE, name, RESOLVE_TIMEOUT_MS
            )
            if info is None:
                continue
            await self.consider(name, info.properties, info.parsed_addresses())

    def household(self) -> Household:
        """Runs in the database thread: whom this device trusts right now."""
        daemon = self.daemon
        pinned = {row.id for row in daemon.index.nodes()}
        pinned.update(known.id for known in daemon.config.known_nodes)
        return Household(
            daemon.keys.account_id,
            self.tag_key,
            frozenset(cert.device_public_key for cert in daemon.namespace.devices()),
            frozenset(pinned),
        )

    def log_once(self, who: str, reason: str, message: str) -> None:
        if (who, reason) in self._logged:
            return
        if len(self._logged) >= MAX_LOGGED:
            self._logged.clear()
        self._logged.add((who, reason))
        logger.info("ignoring LAN announcement %s: %s", who, message)

    async def consider(self, name: str, properties: Any, resolved: list[str]) -> bool:
        """Check one announcement; put its node in the index when it is ours. True if taken."""
        try:
            announcement = from_properties(properties)
        except AnnouncementRejected as error:
            self.log_once(name, error.reason, str(error))
            return False
        if announcement.node_id == self.own_id:
            return False
        household = await self.daemon.db(self.household)
        try:
            check_announcement(announcement, household, time.time())
        except AnnouncementRejected as error:
            self.log_once(announcement.node_id, error.reason, f"{name}: {error}")
            return False
        address = next(
            (a for a in announcement.addresses if parse_address(a)[0] in resolved),
            announcement.addresses[0],
        )
        await self.daemon.db(self.daemon.index.upsert_node, announcement.node_id, address, "lan")
        if self.accepted.get(announcement.node_id) != address:
            self.accepted[announcement.node_id] = address
            logger.info("found node %s on the LAN at %s", announcement.node_id[:8], address)
            await self.daemon.refresh_nodes()
            self.daemon.wake_replication()
        return True


async def run_lan_discovery(daemon: Daemon) -> None:
    zc = await trio.to_thread.run_sync(open_zeroconf)
    browser: ServiceBrowser | None = None
    try:
        lan = LanDiscovery(daemon, zc)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lan.resolve_loop)
            browser = lan.browse()
            if daemon.node is not None:
                nursery.start_soon(lan.announce_loop)
    finally:
        with trio.CancelScope(shield=True):
            if browser is not None:
                await trio.to_thread.run_sync(browser.cancel)
            await trio.to_thread.run_sync(zc.close)


async def run_discovery(daemon: Daemon) -> None:
    """The daemon's discovery task. Never takes the daemon down: without multicast (or with
    `discovery = false`) the device still has its known nodes and introducers."""
    try:
        await add_introducers(daemon)
    except PermaCloudError as error:
        logger.warning("introducers: %s", error)
    if not daemon.config.discovery:
        return
    try:
        await run_lan_discovery(daemon)
    except (OSError, zeroconf.Error, PermaCloudError) as error:
        logger.warning("LAN discovery stopped: %s", error)
