"""What the distro adds at the SDK level: span processors, the exit flush, the span pipeline,
durable delivery (retry, bound, spool: :mod:`.delivery`)."""
