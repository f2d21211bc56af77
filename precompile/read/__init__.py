"""Stored bytes to a verified package or a miss: the one read path (``read_path``), fetch
and verify (``loading``), kernels shared across packages (``shared_blobs``), what a miss
says (``explain``), one compile per key across processes (``single_flight``), and archive
imports (``archive``)."""
