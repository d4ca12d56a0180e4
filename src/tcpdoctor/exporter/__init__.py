"""The Prometheus exporter: the collector (bounded labels, one diagnosis per scrape), the
dual-stack HTTP server with the exporter-toolkit web config, and the command's loop."""
