"""Webhook endpoints, their subscriptions and secrets, and pings."""
