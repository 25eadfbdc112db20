"""An ML2 mechanism driver that binds every port, because the sandbox runs no L2 agent.

Without an agent nothing binds a port and Nova fails each boot with ``PortBindingFailed``.
The sandbox has no real data plane behind Neutron (the "VMs" are network namespaces wired by
the Nova virt driver), so binding every port as ``vif_type=ovs`` on its first segment, status
ACTIVE, is the truth as far as Neutron can know it.
"""

from __future__ import annotations

from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api
from oslo_log import log as logging

LOG = logging.getLogger(__name__)


class SandboxMechanismDriver(api.MechanismDriver):
    """Binds any port on any flat/vxlan/vlan/local segment, for any host."""

    def initialize(self):
        LOG.info("flexinfra sandbox ML2 mechanism driver: binding every port as vif_type=ovs")

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
