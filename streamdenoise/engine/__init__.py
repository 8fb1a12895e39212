"""Device pipeline: device selection, batching across micrographs, streams, compile."""
