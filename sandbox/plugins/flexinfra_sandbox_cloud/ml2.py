"""The sandbox's ML2 mechanism driver: binds every port, and puts the host on every network.

**Binding.** The sandbox runs no OVS or Linux bridge agent (its L2 agent, ``agent.py``, only
filters), so nothing else would bind a port and Nova would fail each boot with
``PortBindingFailed``. Every port is bound on its first segment, status ACTIVE: the VMs'
veths are plugged by the Nova driver, routers' by the L3 agent's interface driver (``l3.py``).

**The host's port on each network.** The host (where the operator, the tests and Octavia's
controller run) must reach every fixed IP, yet the subnet's gateway address belongs to the
router's ``qr-`` device. So, as a DHCP agent's namespace is on each network of a real cloud,
the host gets a port of its own on each network with a subnet: a Neutron port owned by
``network:dhcp`` (so Neutron frees it with its subnet and network, and it takes its address
from the allocation pool, never a VM's), plugged on the host as a veth pair whose bridge end
is a bridge port like a VM's, so security groups treat the host as a neighbour. This happens
in the subnet's create postcommit, before the API answers: once a client sees the subnet, the
host is on it. Networks named in ``[flexinfra_sandbox] host_gateway_networks`` (the external
network and Octavia's management network: the host *is* their upstream router) get the
subnet's gateway address instead, and no port.
"""

from __future__ import annotations

import ipaddress

from neutron_lib import constants
from neutron_lib import context as n_context
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins import directory
from neutron_lib.plugins import utils as plugin_utils
from neutron_lib.plugins.ml2 import api
from oslo_config import cfg
from oslo_log import log as logging

from flexinfra_sandbox_cloud import netns

LOG = logging.getLogger(__name__)

cfg.CONF.register_opts(
    [
        cfg.ListOpt("host_gateway_networks", default=["public", "lb-mgmt-net"],
                    help="Networks whose subnets' gateway address the host itself holds."),
    ],
    "flexinfra_sandbox",
)

HOST_PORT_NAME = "flexinfra-sandbox-host"
HOST_PORT_DEVICE_ID = "flexinfra-sandbox-host"


def is_host_port(port: dict) -> bool:
    return port.get("device_id") == HOST_PORT_DEVICE_ID


class SandboxMechanismDriver(api.MechanismDriver):
    """Binds any port on any flat/vxlan/vlan/local segment, for any host."""

    def initialize(self):
        LOG.info("flexinfra sandbox ML2 mechanism driver: binding every port as vif_type=ovs; "
                 "the host on every network")

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            context.set_binding(
                segment[api.ID],
                portbindings.VIF_TYPE_OVS,
                {portbindings.CAP_PORT_FILTER: True, portbindings.OVS_HYBRID_PLUG: False},
                status=constants.PORT_STATUS_ACTIVE,
            )
            LOG.debug("bound port %s on segment %s", context.current["id"], segment[api.ID])
            return

    # --- the host's port ----------------------------------------------------------------
    def create_subnet_postcommit(self, context):
        self._sync_host(context.current["network_id"])

    def update_subnet_postcommit(self, context):
        self._sync_host(context.current["network_id"])

    def delete_subnet_postcommit(self, context):
        self._sync_host(context.current["network_id"])

    def update_port_postcommit(self, context):
        if is_host_port(context.current):
            self._sync_host(context.current["network_id"], create=False)

    def delete_port_postcommit(self, context):
        if is_host_port(context.current):
            self._unplug(context.current["network_id"])

    def delete_network_postcommit(self, context):
        self._unplug(context.current["id"])

    def _unplug(self, network_id: str) -> None:
        try:
            netns.unplug_host_port(netns.default_data_dir(), network_id)
        except Exception:  # never fail the API call for the sandbox's plumbing
            LOG.exception("unplugging the host's port on network %s", network_id)

    def _sync_host(self, network_id: str, create: bool = True) -> None:
        try:
            sync_host_port(network_id, create=create)
        except Exception:  # never fail the API call for the sandbox's plumbing
            LOG.exception("putting the host on network %s", network_id)


def sync_host_port(network_id: str, create: bool = True) -> None:
    """Make the host's presence on one network match its IPv4 subnets (idempotent)."""
    plugin = directory.get_plugin()
    ctx = n_context.get_admin_context()
    net = plugin.get_network(ctx, network_id)
    subnets = [s for s in plugin.get_subnets(ctx, filters={"network_id": [network_id]})
               if s["ip_version"] == 4]
    data_dir = netns.default_data_dir()
    if not subnets:
        netns.unplug_host_port(data_dir, network_id)
        return
    prefix = {s["id"]: ipaddress.ip_network(s["cidr"]).prefixlen for s in subnets}
    mtu = int(net.get("mtu") or 1500)
    if net["name"] in cfg.CONF.flexinfra_sandbox.host_gateway_networks:
        addresses = [f"{s['gateway_ip']}/{prefix[s['id']]}" for s in subnets if s["gateway_ip"]]
        netns.plug_host_port(data_dir, network_id, addresses, mtu)
        return
    ports = plugin.get_ports(ctx, filters={"network_id": [network_id],
                                           "device_id": [HOST_PORT_DEVICE_ID]})
    port = ports[0] if ports else None
    have = {ip["subnet_id"] for ip in (port or {}).get("fixed_ips", [])}
    missing = [s["id"] for s in subnets if s["id"] not in have]
    if port is None and create:
        port = plugin_utils.create_port(plugin, ctx, {"port": {
            "network_id": network_id,
            "project_id": net["project_id"],
            "name": HOST_PORT_NAME,
            "device_owner": constants.DEVICE_OWNER_DHCP,
            "device_id": HOST_PORT_DEVICE_ID,
            "admin_state_up": True,
            "fixed_ips": [{"subnet_id": sid} for sid in missing],
        }})
        LOG.info("host port %s on network %s: %s", port["id"], network_id, port["fixed_ips"])
    elif port is not None and missing and create:
        port = plugin.update_port(ctx, port["id"], {"port": {"fixed_ips": [
            *port["fixed_ips"], *({"subnet_id": sid} for sid in missing)]}})
    if port is None:
        return
    addresses = [f"{ip['ip_address']}/{prefix[ip['subnet_id']]}" for ip in port["fixed_ips"]
                 if ip["subnet_id"] in prefix]
    netns.plug_host_port(data_dir, network_id, addresses, mtu, mac=port["mac_address"],
                         port_id=port["id"])
