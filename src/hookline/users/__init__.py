"""Users and the messages they send each other."""
