"""The event log, and publishing an event with its deliveries in the caller's transaction."""
