"""Imaging: untrusted image bytes in, safe pixels out; no models, no SQL.

``limits`` (what an accepted image may be, and the worded refusals), ``read`` and ``fetch``
(bytes from a path or an http(s) URL, never more than the limit; the URL guard against
server-side request forgery), ``sniff`` and ``decode`` (header checks before any pixel is
decoded, every failure classified), ``rgb`` (any mode to 8-bit RGB), ``thumbnails``, ``hashes``
(content and perceptual) and ``geometry`` (the model input's shape and crop, crop boxes).

Nothing is imported here: ingest's decode worker processes import only the modules they use.
"""
