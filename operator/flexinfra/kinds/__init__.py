"""One module per custom-resource kind built on OpenStack: what the kind supplies to the
generic driver (``reconcile.driver.CloudKind``). See docs/ARCHITECTURE.md."""
