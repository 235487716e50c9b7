"""Engage: computed traits, SQL traits, audiences, their activation, journeys and user
subscriptions, computed over a space's profiles (see docs/engage.md)."""
