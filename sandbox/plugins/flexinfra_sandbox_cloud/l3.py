"""Interface driver that lets Neutron's own L3 agent plug router ports into the sandbox.

``interface_driver = flexinfra_sandbox_cloud.l3.BridgeInterfaceDriver`` in the L3 agent's
config. The pinned Neutron ships only the OVS driver (no datapath here) and a null one; this
is what Linux bridge's driver did: a veth pair, one end (``qr-``/``qg-``...) inside the router
namespace with the port's MAC, the other end on the network's bridge. The bridges and veths
are the same as the VMs' (``netns.py``), so a router port is a neighbour of the VMs on the
network's segment. Everything else (addresses, routes, SNAT, floating IPs, conntrack) is the
L3 agent's own code.
"""

from __future__ import annotations

from neutron.agent.linux import interface
from oslo_log import log as logging

from flexinfra_sandbox_cloud import netns

LOG = logging.getLogger(__name__)


class BridgeInterfaceDriver(interface.LinuxInterfaceDriver):
    DEV_NAME_PREFIX = "ns-"

    def plug_new(self, network_id, port_id, device_name, mac_address, bridge=None,
                 namespace=None, prefix=None, mtu=None):
        if not namespace:
            raise ValueError(f"{device_name}: the sandbox plugs router ports into a namespace")
        netns.plug_namespace_port(netns.default_data_dir(), network_id, port_id, namespace,
                                  device_name, mac_address, int(mtu or 1500))
        LOG.debug("plugged %s (port %s) into %s", device_name, port_id, namespace)

    def unplug(self, device_name, bridge=None, namespace=None, prefix=None):
        """The veth's two ends go together: deleting the one in the namespace is enough."""
        if namespace and netns.netns_exists(namespace):
            netns._run(["ip", "-n", namespace, "link", "del", device_name], check=False)
        LOG.debug("unplugged %s from %s", device_name, namespace)

    def set_mtu(self, device_name, mtu, namespace=None, prefix=None):
        if namespace:
            netns._run(["ip", "-n", namespace, "link", "set", device_name, "mtu", str(mtu)],
                       check=False)
