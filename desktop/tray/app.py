"""The tray process: a pystray icon whose image, tooltip and menu follow the daemon's status.

pystray is imported only in `run()`: it connects to the display at import time, and the import
rule test (and `permacloud tray --help`) must work without one. Menu actions run on one worker
thread so a slow daemon never freezes the GTK main loop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from desktop.core.errors import PermaCloudError
from desktop.tray.coalesce import Coalescer, Notice
from desktop.tray.icons import draw_icon
from desktop.tray.launcher import LaunchError, open_path, start_daemon
from desktop.tray.link import DaemonLink
from desktop.tray.notifier import DesktopNotifier
from desktop.tray.state import OFFLINE_VIEW, TrayView, derive_view

logger = logging.getLogger(__name__)

ICON_SIZE = 32
ACTIVITY_LIMIT = 8
TRAY_WAIT = 15.0
MOUNTPOINT = "~/PermaCloud"  # the default of `permacloud mount` (the daemon needs a path)
SHARING_LABELS = {"always": "Always", "idle": "Only when idle", "never": "Never"}


class TrayUnavailable(PermaCloudError):
    """No display or no system tray to put the icon in."""


def _choose_backend() -> str:
    backend = os.environ.setdefault("PYSTRAY_BACKEND", "gtk")
    if backend not in ("gtk", "appindicator", "xorg"):
        raise TrayUnavailable(f"unsupported PYSTRAY_BACKEND {backend!r}: use gtk or appindicator")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise TrayUnavailable("no graphical display (DISPLAY is not set): the tray needs a desktop")
    return backend


class TrayApp:
    def __init__(
        self,
        socket_path: Path,
        *,
        notify_interval: float = 30.0,
        tray_wait: float = TRAY_WAIT,
    ) -> None:
        self.link = DaemonLink(socket_path, self._on_status, self._on_notify)
        self.view: TrayView = OFFLINE_VIEW
        self.activity: list[Mapping[str, Any]] = []
        self.coalescer = Coalescer(notify_interval)
        self.notifier = DesktopNotifier()
        self._tray_wait = tray_wait
        self._actions = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tray-action")
        self._icon: Any = None
        self._pystray: Any = None
        self._failure: str | None = None
        self._view_lock = threading.Lock()

    # ---- status and notifications (called from the link's threads) ----

    def _on_status(self, status: Mapping[str, Any] | None) -> None:
        view = derive_view(status)
        with self._view_lock:
            changed, was_running = view != self.view, self.view.daemon_running
            self.view = view
        if view.daemon_running and (changed or not was_running):
            self._refresh_activity()
        if changed:
            logger.info("tray state: %s", view.tooltip)
            self._apply_view(view)
        for notice in self.coalescer.due(time.monotonic()):
            self._show(notice)

    def _on_notify(self, data: Mapping[str, Any]) -> None:
        kind = data.get("kind") if isinstance(data.get("kind"), str) else "error"
        title, text = str(data.get("title") or "PermaCloud"), str(data.get("text") or "")
        notice = self.coalescer.offer(Notice(str(kind), title, text), time.monotonic())
        if notice is not None:
            self._show(notice)
        self._refresh_activity()

    def _show(self, notice: Notice) -> None:
        title, body = notice.summary()
        self.notifier.send(notice.kind, title, body)

    def _refresh_activity(self) -> None:
        try:
            items = self.link.call("activity", {"limit": ACTIVITY_LIMIT})
        except (PermaCloudError, OSError) as error:
            logger.debug("activity unavailable: %s", error)
            return
        if isinstance(items, list):
            self.activity = [item for item in items if isinstance(item, Mapping)]
            if self._icon is not None:
                self._icon.update_menu()

    def _apply_view(self, view: TrayView) -> None:
        icon = self._icon
        if icon is None:
            return
        icon.icon = draw_icon(view.icon, view.count, ICON_SIZE)
        icon.title = view.tooltip
        icon.update_menu()

    # ---- menu actions (run on the action thread) ----

    def _background(self, job: Callable[[], object], what: str) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except (PermaCloudError, OSError) as error:
                logger.warning("%s failed: %s", what, error)
                notice = self.coalescer.offer(
                    Notice("error", f"PermaCloud: {what} failed", str(error)), time.monotonic()
                )
                if notice is not None:
                    self._show(notice)
            self.link.refresh_soon()

        def action() -> None:
            self._actions.submit(run)

        return action

    def _open_folder(self) -> None:
        if self.view.folder is None:
            raise LaunchError("no sync folder is configured")
        open_path(self.view.folder)

    def _open_mount(self) -> None:
        path = self.view.mount_path if self.view.mounted else None
        if path is None:
            mountpoint = Path(MOUNTPOINT).expanduser()
            reply = self.link.call("mount", {"path": str(mountpoint)})
            path = reply.get("path") if isinstance(reply, Mapping) else None
        if not isinstance(path, str) or not path:
            raise LaunchError("the daemon did not say where it mounted")
        open_path(path)

    def _toggle_sync(self) -> None:
        self.link.call("sync.resume" if self.view.sync_paused else "sync.pause", {})

    def _set_sharing(self, mode: str) -> Callable[[], None]:
        return self._background(
            lambda: self.link.call("agent.set", {"key": "sharing", "value": mode}),
            "changing sharing",
        )

    def _toggle_sharing_pause(self) -> None:
        if self.view.sharing_paused:
            self.link.call("agent.resume", {})
        else:
            self.link.call("agent.pause", {"seconds": 3600})

    def _quit(self, stop_daemon: bool) -> None:
        if stop_daemon and self.view.daemon_running:
            try:
                self.link.call("shutdown", {})
            except PermaCloudError as error:
                logger.warning("could not stop the daemon: %s", error)
        self.link.stop()
        if self._icon is not None:
            self._icon.stop()

    # ---- menu ----

    def _activity_items(self) -> Iterator[Any]:
        item = self._pystray.MenuItem
        if not self.activity:
            yield item("No recent activity", None, enabled=False)
            return
        for entry in self.activity[:ACTIVITY_LIMIT]:
            stamp = entry.get("time")
            when = (
                time.strftime("%H:%M", time.localtime(stamp))
                if isinstance(stamp, (int, float))
                else ""
            )
            yield item(f"{when}  {entry.get('text', '')}".strip(), None, enabled=False)

    def build_menu(self) -> Any:
        pystray = self._pystray
        item, menu = pystray.MenuItem, pystray.Menu
        running: Callable[[Any], bool] = lambda _item: self.view.daemon_running  # noqa: E731
        sharing_items = [
            item(
                label,
                self._set_sharing(mode),
                checked=lambda _item, mode=mode: self.view.sharing == mode,
                radio=True,
                enabled=running,
            )
            for mode, label in SHARING_LABELS.items()
        ]
        sharing_items.append(menu.SEPARATOR)
        sharing_items.append(
            item(
                lambda _item: (
                    "Resume sharing now" if self.view.sharing_paused else "Pause sharing for 1 hour"
                ),
                self._background(self._toggle_sharing_pause, "pausing sharing"),
                enabled=running,
            )
        )
        return menu(
            item(lambda _item: self.view.status_line, None, enabled=False),
            menu.SEPARATOR,
            item(
                "Start PermaCloud",
                self._background(start_daemon, "starting PermaCloud"),
                visible=lambda _item: not self.view.daemon_running,
            ),
            item(
                "Open sync folder",
                self._background(self._open_folder, "opening the sync folder"),
                default=True,
                enabled=lambda _item: self.view.folder is not None,
            ),
            item(
                "Open mount",
                self._background(self._open_mount, "opening the mount"),
                enabled=running,
            ),
            menu.SEPARATOR,
            item(
                lambda _item: "Resume sync" if self.view.sync_paused else "Pause sync",
                self._background(self._toggle_sync, "pausing sync"),
                enabled=running,
            ),
            item("Sharing", menu(*sharing_items), enabled=running),
            item("Recent activity", menu(self._activity_items)),
            menu.SEPARATOR,
            item("Quit", lambda: self._quit(stop_daemon=False)),
            item(
                "Quit and stop daemon",
                lambda: self._quit(stop_daemon=True),
                enabled=running,
            ),
        )

    # ---- lifetime ----

    def _setup(self, icon: Any) -> None:
        if self._failure is not None:
            return
        icon.visible = True
        self.link.start()
        if os.environ.get("PYSTRAY_BACKEND") == "gtk":
            self._watch_embedding(icon)

    def _watch_embedding(self, icon: Any) -> None:
        """Gtk.StatusIcon fails silently without a tray host: stop with a clear error instead."""
        from gi.repository import GLib

        deadline = time.monotonic() + self._tray_wait
        embedded = threading.Event()

        def check() -> bool:
            if icon._status_icon.is_embedded():
                embedded.set()
            return False

        while time.monotonic() < deadline and not embedded.is_set():
            GLib.idle_add(check)
            embedded.wait(0.5)
        if not embedded.is_set():
            self._failure = "no system tray found on this display (is a tray/panel running?)"
            self._quit(stop_daemon=False)

    def run(self) -> None:
        """Show the icon until Quit; raises `TrayUnavailable` without a display or tray."""
        _choose_backend()
        try:
            import pystray
        except Exception as error:  # pystray raises whatever its backend hit at import
            raise TrayUnavailable(f"cannot show a tray icon: {error}") from None
        self._pystray = pystray
        self._icon = pystray.Icon(
            "permacloud",
            icon=draw_icon(self.view.icon, self.view.count, ICON_SIZE),
            title=self.view.tooltip,
            menu=self.build_menu(),
        )
        try:
            self._icon.run(setup=self._setup)
        except Exception as error:  # e.g. GLib.Error from D-Bus while the backend starts
            self._failure = f"cannot show a tray icon: {error}"
            self._icon._mark_ready()  # releases pystray's setup thread, which then returns
        finally:
            self.link.stop()
            self._actions.shutdown(wait=False, cancel_futures=True)
        if self._failure is not None:
            raise TrayUnavailable(self._failure)
