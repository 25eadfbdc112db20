"""The node agent: a small HTTPS service on every Galera node (``flexinfra agent``).

Standard library only, Python >= 3.11: it is shipped to the VM inside its user_data as a
zipapp built from this package (``bundle.build_zipapp``), and the VM may have no network
access to install anything. It must therefore import nothing from the rest of flexinfra
(relative imports only: inside the zipapp the package is called ``flexinfra_agent``).

Modules: ``config`` (the JSON file user_data writes), ``mariadb`` (grastate.dat, my.cnf,
``--wsrep-recover``, the local client), ``process`` (running mariadbd), ``supervisor``
(desired state, restart policy, the operations), ``peers`` (what the other nodes' agents
say), ``server`` (the mTLS + token control API and the plain-HTTP health port), ``main`` (the
command line).
"""

AGENT_VERSION = "1"
