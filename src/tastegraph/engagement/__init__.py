"""Engagement: validating and recording events (``events``, ``service``) and the event bus
(``bus``) through which other services (the feed) hear about what happened."""
