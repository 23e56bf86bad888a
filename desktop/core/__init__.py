"""Sans-I/O storage engine: capabilities, encryption, erasure coding, integrity, manifests.

Nothing here opens sockets, starts trio or touches the disk except through arguments.
"""
