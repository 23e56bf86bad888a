"""PermaCloud client engine: uploads to and downloads from many storage nodes."""
