"""The idle-resource agent: the storage node that keeps other people's shares, and its scheduler."""
