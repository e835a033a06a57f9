"""dqad fetcher service."""
