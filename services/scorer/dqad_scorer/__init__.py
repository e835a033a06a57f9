"""dqad scorer service."""
