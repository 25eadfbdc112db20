"""kopf wiring only: read the model, call the reconcile core, write status and events."""


def register() -> None:
    """Import the handler modules, which registers them with kopf (reads the settings)."""
    from flexinfra.handlers import galera, sitetemplate, website  # noqa: F401
