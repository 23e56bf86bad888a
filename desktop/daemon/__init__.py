"""The one background process per device: supervises node, client engine, mount and sync."""
