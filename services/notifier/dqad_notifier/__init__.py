"""dqad notifier service."""
