"""Every patch of another package's private code."""
