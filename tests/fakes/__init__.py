"""Contract fakes for vendor APIs that cannot run here (Langfuse, LaunchDarkly).

Each fake validates every response body it sends with the vendor's own models, so it cannot
drift from the real API unnoticed.
"""
