"""The shared vocabulary at the bottom of the operator: plain data, the standard library only.

Everything above speaks it: ``cloud/`` hands observed objects over as ``CloudObject``s,
``planning/`` answers with a ``Plan`` of typed ``PlannedAction``s, ``reconcile/`` executes
them and raises the errors defined here. Nothing in this package imports another part of
flexinfra, so no layer can form a cycle through it.
"""
