"""The tray icon: a separate small process that shows the daemon's state and talks to it over IPC.

It must never import the engine (core beyond errors, agent, net, client, fuse, sync): a crash or
a heavy import there must not take the user's tray with it, and the daemon stays the only owner
of state. Only `desktop.daemon.ipc_client`, `ipc_protocol` and `paths` are allowed.
"""
