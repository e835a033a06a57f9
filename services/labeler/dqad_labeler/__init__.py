"""dqad labeler service."""
