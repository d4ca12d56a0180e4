"""Reproduce connection pathologies inside throwaway network namespaces (root only)."""
