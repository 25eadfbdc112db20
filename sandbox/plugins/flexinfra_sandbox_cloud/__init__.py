"""Plug-ins that the flexinfra sandbox loads into the OpenStack services it runs.

Installed into the OpenStack venv (not the operator's): ``ml2`` binds Neutron ports without
agents, ``virt`` is the Nova virt driver, ``wsgi_runner`` serves the WSGI APIs.
"""
