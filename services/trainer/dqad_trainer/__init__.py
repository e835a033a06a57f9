"""dqad trainer service."""
