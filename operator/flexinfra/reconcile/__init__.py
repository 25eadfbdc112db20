"""The generic machinery between a kind and the cloud: the driver (one pass), the executor,
the quota pre-check, the teardown by owner, the projection helpers and the ``Outcome``.
Nothing here knows a kind; a kind plugs in through ``driver.CloudKind``."""
