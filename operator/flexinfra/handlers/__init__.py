"""kopf wiring only: read the model, call the reconcile core, write status and events.

Importing this package registers every handler with kopf.
"""

from flexinfra.handlers import sitetemplate, website  # noqa: F401
