"""Bytes and untrusted input, no torch: the package envelope (``envelope``), what decoding a
body may cost (``decode_limits``), whether a stored code object is safe to build
(``code_check``), and an envelope checked while it streams out of an archive
(``archive_stream``)."""
