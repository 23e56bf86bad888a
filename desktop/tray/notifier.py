"""Desktop notifications over the freedesktop Notifications D-Bus API (via Gio).

Gio is already loaded by the GTK tray, so no extra dependency. A missing notification server is
logged once and otherwise ignored: notifications are a courtesy, never a reason to crash.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

logger = logging.getLogger(__name__)

BUS_NAME = "org.freedesktop.Notifications"
OBJECT_PATH = "/org/freedesktop/Notifications"
URGENCY = {"conflict": 1, "error": 2}


class DesktopNotifier:
    """Sends notifications; a second one of a kind replaces the first one's bubble."""

    def __init__(self, app_name: str = "PermaCloud") -> None:
        self.app_name = app_name
        self._replace_ids: dict[str, int] = {}
        self._lock = threading.Lock()
        self._warned = False
        self._bus: Any = None

    def _connection(self) -> Any:
        if self._bus is None:
            from gi.repository import Gio

            self._bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
        return self._bus

    def send(self, kind: str, title: str, body: str) -> int | None:
        """Show one notification; returns its server id, or None when it could not be shown."""
        from gi.repository import Gio, GLib

        with self._lock:
            hints = {"urgency": GLib.Variant("y", URGENCY.get(kind, 1))}
            params = GLib.Variant(
                "(susssasa{sv}i)",
                (
                    self.app_name,
                    self._replace_ids.get(kind, 0),
                    "permacloud",
                    title,
                    body,
                    [],
                    hints,
                    -1,
                ),
            )
            try:
                reply = self._connection().call_sync(
                    BUS_NAME,
                    OBJECT_PATH,
                    BUS_NAME,
                    "Notify",
                    params,
                    GLib.VariantType("(u)"),
                    Gio.DBusCallFlags.NONE,
                    5000,
                    None,
                )
            except GLib.Error as error:
                if not self._warned:
                    logger.warning("desktop notifications unavailable: %s", error.message)
                    self._warned = True
                return None
            notification_id: int = reply.unpack()[0]
            self._replace_ids[kind] = notification_id
            return notification_id
