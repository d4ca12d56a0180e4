"""Base utilities every layer may use: atomic file writes, a fixed-cadence loop, malloc trimming."""
