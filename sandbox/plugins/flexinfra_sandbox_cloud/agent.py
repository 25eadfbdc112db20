"""The sandbox's L2 agent: Neutron's own agent loop and iptables firewall on the VMs' ports.

Security groups in the sandbox are enforced by Neutron's code, the way the Linux bridge agent
did it for years: ``CommonAgentLoop`` (the loop the Linux bridge and macvtap agents share)
finds the VM ports, asks the server for their details and security groups over RPC, reports
them up, and ``SecurityGroupAgentRpc`` drives ``IptablesFirewallDriver`` (stateful, conntrack
zones per network, ipsets for remote groups, anti-spoofing) on the host, where the VMs' veths
are bridge ports and ``br_netfilter`` passes bridged IPv4 through iptables. Rule changes reach
the agent as the server's RPC notifications, and a full resync runs every few seconds.

What is the sandbox's own:

* ``SandboxManager`` (the "device manager" part): a VM port is the host end of a VM's veth
  (``netns.py``), found from the VMs' state files; the host end is named after the port id,
  so the device handed to Neutron is the full port UUID (which the server resolves as is).
* One agent serves both nova-compute hosts of the machine: a port bound to ``sandbox-az1`` is
  asked about with ``host=sandbox-az1`` (``_PerHostPluginApi``), since the server answers "no
  active binding" to an agent of another host. Two agents in one network namespace would
  fight over the same iptables chains.
* ``SandboxIptablesFirewall``: the Linux bridge driver's device names were ``tap<id>`` on
  ``brq<net>``; ours are ``fxve-<id>`` on ``fxbr-<net>``.

Run as ``python -m flexinfra_sandbox_cloud.agent --config-file neutron.conf --config-file
agent.ini``.
"""

from __future__ import annotations

import os
import sys

# Neutron's agents run on oslo.service's threading backend; this import selects it (the
# eventlet default would need monkey patching, or the state reports never run)
import neutron.cmd.agents  # noqa: F401  isort: skip

import oslo_messaging
from neutron.agent import rpc as agent_rpc
from neutron.agent.linux import iptables_firewall
from neutron.api.rpc.handlers import securitygroups_rpc as sg_rpc
from neutron.common import config as common_config
from neutron.conf.agent import common as agent_config
from neutron.plugins.ml2.drivers.agent import _agent_manager_base as amb
from neutron.plugins.ml2.drivers.agent import _common_agent as ca
from neutron_lib.agent import topics
from oslo_config import cfg
from oslo_log import log as logging
from oslo_service import service

from flexinfra_sandbox_cloud import netns

LOG = logging.getLogger(__name__)

AGENT_TYPE = "Linux bridge agent"  # what this agent does; Neutron knows the type's name
AGENT_BINARY = "neutron-flexinfra-sandbox-agent"
EXTENSION_DRIVER_TYPE = "flexinfra_sandbox"


class SandboxIptablesFirewall(iptables_firewall.IptablesFirewallDriver):
    """``IptablesFirewallDriver`` with the sandbox's device and bridge names."""

    def _get_device_name(self, port):
        if not isinstance(port, dict):
            return port
        return netns.veth_name(port["device"])

    def _get_br_device_name(self, port):
        return netns.bridge_name(port["network_id"])


class SandboxRpcCallbacks(sg_rpc.SecurityGroupAgentRpcCallbackMixin,
                          amb.CommonAgentManagerRpcCallBackBase):
    """Port and network notifications from the server (security group ones come from the
    mixin)."""

    target = oslo_messaging.Target(version="1.4")

    def port_update(self, context, **kwargs):
        self.updated_devices.add(kwargs["port"]["id"])

    def network_delete(self, context, **kwargs):
        LOG.debug("network_delete %s: the bridge goes with its last port",
                  kwargs.get("network_id"))

    def network_update(self, context, **kwargs):
        network_id = kwargs["network"]["id"]
        for port_id, net in list(self.manager.network_ports_by_device().items()):
            if net == network_id:
                self.updated_devices.add(port_id)


class SandboxManager(amb.CommonAgentManagerBase):
    def __init__(self, data_dir):
        self.data_dir = data_dir
        #: port id -> (nova host, network id), refreshed by every scan
        self.ports: dict[str, tuple[str, str]] = {}

    # --- what exists ------------------------------------------------------------------
    def get_all_devices(self):
        ports = {}
        for vm in netns.Vm.all(self.data_dir):
            if vm.state.get("power") != "running":
                continue
            for vif in vm.vifs:
                if netns.link_exists(netns.veth_name(vif["port_id"])):
                    ports[vif["port_id"]] = (vm.state.get("host"), vif["network_id"])
        self.ports = ports
        return set(ports)

    def device_host(self, device):
        return (self.ports.get(device) or (None, None))[0]

    def network_ports_by_device(self):
        return {d: net for d, (_, net) in self.ports.items()}

    def get_devices_modified_timestamps(self, devices):
        return {}

    # --- identity -----------------------------------------------------------------------
    def get_agent_id(self):
        return f"flexinfra-sandbox-{cfg.CONF.host}"

    def get_agent_configurations(self):
        return {"devices_from": str(self.data_dir), "bridges": "fxbr-<network id>"}

    def get_extension_driver_type(self):
        return EXTENSION_DRIVER_TYPE

    def get_rpc_callbacks(self, context, agent, sg_agent):
        callbacks = SandboxRpcCallbacks(context, agent, sg_agent)
        callbacks.manager = self
        return callbacks

    def get_agent_api(self, **kwargs):
        return None

    def get_rpc_consumers(self):
        return [[topics.PORT, topics.UPDATE], [topics.NETWORK, topics.DELETE],
                [topics.NETWORK, topics.UPDATE], [topics.SECURITY_GROUP, topics.UPDATE]]

    # --- what the loop asks of a device ---------------------------------------------------
    def plug_interface(self, network_id, network_segment, device, device_owner):
        """Nova's virt driver plugged it already: say whether it is still there."""
        return netns.link_exists(netns.veth_name(device))

    def ensure_port_admin_state(self, device, admin_state_up):
        netns._run(["ip", "link", "set", netns.veth_name(device),
                    "up" if admin_state_up else "down"], check=False)

    def setup_arp_spoofing_protection(self, device, device_details):
        """The firewall's MAC/IP anti-spoofing covers IPv4; ARP is not filtered here."""

    def delete_arp_spoofing_protection(self, devices):
        pass

    def delete_unreferenced_arp_protection(self, current_devices):
        pass


class _PerHostPluginApi(agent_rpc.PluginApi):
    """Asks about each port as the nova host it is bound to (see the module doc)."""

    def __init__(self, topic, manager: SandboxManager):
        super().__init__(topic)
        self.manager = manager

    def _by_host(self, devices, default):
        groups: dict[str, list] = {}
        for d in devices:
            groups.setdefault(self.manager.device_host(d) or default, []).append(d)
        return groups

    def get_devices_details_list(self, context, devices, agent_id, host=None, **kwargs):
        out = []
        for h, devs in self._by_host(devices, host).items():
            out += super().get_devices_details_list(context, devs, agent_id, host=h, **kwargs)
        return out

    def update_device_up(self, context, device, agent_id, host=None, **kwargs):
        return super().update_device_up(context, device, agent_id,
                                        self.manager.device_host(device) or host, **kwargs)

    def update_device_down(self, context, device, agent_id, host=None, **kwargs):
        return super().update_device_down(context, device, agent_id,
                                          self.manager.device_host(device) or host, **kwargs)


class SandboxAgentLoop(ca.CommonAgentLoop):
    def setup_rpc(self):
        super().setup_rpc()
        self.plugin_rpc = _PerHostPluginApi(topics.PLUGIN, self.mgr)


def main() -> None:
    common_config.register_common_config_options()
    agent_config.register_agent_state_opts_helper(cfg.CONF)
    common_config.init(sys.argv[1:])
    common_config.setup_logging()
    agent_config.setup_privsep()
    manager = SandboxManager(netns.default_data_dir())
    agent = SandboxAgentLoop(manager, cfg.CONF.AGENT.polling_interval,
                             cfg.CONF.AGENT.quitting_rpc_timeout, AGENT_TYPE, AGENT_BINARY)
    LOG.info("flexinfra sandbox L2 agent: filtering the VMs' ports in %s",
             os.fspath(manager.data_dir))
    service.launch(cfg.CONF, agent, restart_method="mutate").wait()


if __name__ == "__main__":
    main()
