"""Galera on VMs, the operator's side: pure failover/recovery decisions (``decide``), the node
agents' client and credentials (``client``, ``credentials``), and what a node boots with
(``mycnf``, ``userdata``). The agent itself is ``flexinfra.agent``."""
