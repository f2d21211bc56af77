"""A serving fleet's shape buckets (``signatures``), checked (``coverage``) or compiled
ahead of time (``warmup``) on the callable a factory names (``target``)."""
