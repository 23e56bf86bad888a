"""The node protocol: identities, request signing, HTTP glue on trio, node clients."""
