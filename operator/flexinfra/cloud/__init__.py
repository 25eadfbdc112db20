"""The only layer that talks to OpenStack: the gateway (calls, throttle, retries, metrics,
tenant inventory), the connection cache, error classification, and one adapter per
OpenStack kind (``cloud.adapters``)."""
