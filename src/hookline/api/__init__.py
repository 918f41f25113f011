"""HTTP wiring: the app factory, its lifespan and the shared dependencies."""
