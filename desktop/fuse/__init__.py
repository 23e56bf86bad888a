"""The PermaCloud FUSE mount: pyfuse3 over the namespace with a journaled write-back cache."""
