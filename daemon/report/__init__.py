"""Everything that tells people what the daemon does: status.json, the website in the outbox,
health.json, the Prometheus text file, all refreshed after every pass of the main loop."""
