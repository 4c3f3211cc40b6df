"""Node service: consistency levels, routing and forwarding, map installation, housekeeping."""
