"""cajnn: joint JPEG compression-artifact reduction and 4x super-resolution (CAJNN, ICPR 2020)."""
