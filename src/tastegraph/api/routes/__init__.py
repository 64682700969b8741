"""The API's routers, one per resource: each route parses, calls a service, serialises.

``pins`` (catalog CRUD, thumbnails), ``search`` (words, images, similar, duplicates),
``people`` (users, boards, saves), ``events`` (recording and admin), ``feed`` (home feed,
related pins), ``admin`` (health, readiness, tokens, audit, quarantine).
"""
