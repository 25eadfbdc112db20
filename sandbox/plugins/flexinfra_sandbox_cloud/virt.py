"""Nova virt driver whose servers are namespaces running real processes.

``compute_driver = flexinfra_netns.NetnsDriver`` (a shim in ``nova/virt/`` imports this
module). It is Nova's ``FakeDriverWithoutFakeNodes`` (stable node identity across restarts,
every bookkeeping call Nova expects) plus a real guest per server, built by ``netns.py``:
a network namespace plugged into a per-network bridge (the host reaches the server at its
fixed IP), an init in its own PID/mount/UTS namespaces with a private filesystem view, the
server's user_data run at its first boot, volumes as directories mounted inside.

Semantics, chosen to match a real KVM guest with cloud-init:

* spawn boots the guest; user_data (``#!`` script, or cloud-config ``write_files`` +
  ``runcmd`` + ``bootcmd``) runs **once per instance**, at first boot, after the
  config-drive/personality files (``injected_files``, mode 0600) are written;
* stop sends TERM to every process of the guest (KILL after Nova's shutdown timeout);
  start, and soft or hard reboot, boot it again: ``bootcmd`` and ``/etc/rc.local`` run at every
  boot, user_data does not (as with cloud-init on a real image, whose services come back
  through the init system). Rebuild is destroy + spawn: a new first boot;
* when a guest's init dies on its own (killed from the host, or ``poweroff -f``/``kill 1``
  inside), ``get_info`` reports SHUTDOWN and a lifecycle event is emitted at once, so Nova
  marks the server SHUTOFF within about a second instead of at its next power-state sync;
* guests outlive nova-compute (like qemu processes): ``init_host`` reloads every guest of
  this host from its ``state.json``; ``resume_state_on_host_boot`` restarts guests that
  should run (``resume_guests_state_on_host_boot = true``) after ``sandbox down``/``up``.

Several nova-compute services on one machine share the data dir; each only handles the
guests whose ``state.json`` names its ``CONF.host``.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import os
import threading
import time
from pathlib import Path

import nova.conf
from nova import exception
from nova.compute import power_state
from nova.virt import event as virtevent
from nova.virt import fake
from oslo_log import log as logging

from flexinfra_sandbox_cloud import netns

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

__all__ = ["NetnsDriver"]

#: seconds between checks that running guests are still alive
WATCH_INTERVAL = 1.0
#: grace for a soft reboot (TERM, then KILL)
SOFT_REBOOT_GRACE = 10.0
#: upper bound for Nova's clean-shutdown timeout
MAX_STOP_GRACE = 60.0


def data_dir() -> Path:
    """The sandbox's data dir: VMs in ``vms/``, volumes in ``volumes/``.

    ``FLEXINFRA_SANDBOX_STATE`` when set (as ``flexinfra_sandbox.paths`` reads it), else the
    parent of nova-compute's ``state_path`` (``<state>/data/nova-compute-<host>``), else the
    sandbox's default state dir.
    """
    if os.environ.get("FLEXINFRA_SANDBOX_STATE"):
        return Path(os.environ["FLEXINFRA_SANDBOX_STATE"]) / "data"
    state_path = Path(CONF.state_path or "")
    if state_path.parent.name == "data":
        return state_path.parent
    return Path.home() / ".local/state/flexinfra/sandbox/data"


def _volume_id(connection_info: dict) -> str:
    """Cinder's FakeLoggingVolumeDriver gives a fake connection_info: key on the volume id
    (Nova puts it in ``serial``)."""
    vid = (connection_info or {}).get("serial") or ((connection_info or {}).get("data") or {}).get(
        "volume_id"
    )
    if not vid:
        raise exception.VolumeUnattached(volume_id="unknown")
    return vid


class NetnsDriver(fake.FakeDriverWithoutFakeNodes):
    capabilities = {
        **fake.FakeDriver.capabilities,
        # one directory per volume: two servers could share one, but Nova and Cinder would
        # then also have to agree on it; keep it off like most real backends
        "supports_multiattach": False,
    }

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        self._data = data_dir()
        self._launchers: dict[str, object] = {}
        self._locks: dict[str, threading.RLock] = collections.defaultdict(threading.RLock)
        self._locks_guard = threading.Lock()
        #: guests in a transition started by Nova: the watcher leaves them alone
        self._busy: set[str] = set()
        self._watcher: threading.Thread | None = None

    # --- helpers ------------------------------------------------------------------------
    def _lock(self, uuid: str) -> threading.RLock:
        with self._locks_guard:
            return self._locks[uuid]

    @contextlib.contextmanager
    def _transition(self, uuid: str):
        with self._lock(uuid):
            self._busy.add(uuid)
            try:
                yield
            finally:
                self._busy.discard(uuid)

    def _vm(self, instance) -> netns.Vm:
        vm = netns.Vm(self._data, instance.uuid)
        if not vm.exists():
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        return vm.load()

    def _boot(self, vm: netns.Vm) -> None:
        netns.ensure_network(vm)
        if not netns.is_running(vm):
            t0 = time.monotonic()
            self._launchers[vm.uuid] = netns.start(vm)
            LOG.info("guest %s booted in %.2fs (init pid %s)", vm.uuid,
                     time.monotonic() - t0, vm.state.get("init_pid"))
        if vm.uuid in self.instances:
            self.instances[vm.uuid].state = power_state.RUNNING

    def _halt(self, vm: netns.Vm, grace: float) -> None:
        netns.stop(vm, grace=grace)
        proc = self._launchers.pop(vm.uuid, None)
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.wait(5)
        if vm.uuid in self.instances:
            self.instances[vm.uuid].state = power_state.SHUTDOWN

    # --- service lifecycle ----------------------------------------------------------------
    def init_host(self, host):
        super().init_host(host)
        for vm in netns.Vm.all(self._data):
            if vm.state.get("host") != CONF.host:
                continue
            running = netns.is_running(vm)
            self.instances[vm.uuid] = fake.FakeInstance(
                vm.state.get("name", vm.uuid),
                power_state.RUNNING if running else power_state.SHUTDOWN,
                vm.uuid,
            )
            flavor = vm.state.get("flavor") or {}
            self.resources.claim(vcpus=flavor.get("vcpus", 0), mem=flavor.get("memory_mb", 0),
                                 disk=flavor.get("root_gb", 0))
            for vif in vm.vifs:
                self._interfaces[vif["port_id"]] = {"id": vif["port_id"]}
            LOG.info("reloaded guest %s (%s)", vm.uuid, "running" if running else "stopped")
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="netns-watch", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        """Report guests that died on their own, and reap their launchers."""
        while True:
            time.sleep(WATCH_INTERVAL)
            try:
                for uuid, proc in list(self._launchers.items()):
                    if proc.poll() is not None and uuid not in self._busy:
                        self._launchers.pop(uuid, None)
                for uuid, inst in list(self.instances.items()):
                    if inst.state != power_state.RUNNING or uuid in self._busy:
                        continue
                    vm = netns.Vm(self._data, uuid)
                    if not vm.exists():
                        continue
                    vm.load()
                    if netns.is_running(vm) or uuid in self._busy:
                        continue
                    with self._lock(uuid):
                        if uuid in self._busy or inst.state != power_state.RUNNING:
                            continue
                        LOG.info("guest %s: its processes are gone; reporting it stopped", uuid)
                        self._halt(vm, grace=0)
                    self.emit_event(
                        virtevent.LifecycleEvent(uuid, virtevent.EVENT_LIFECYCLE_STOPPED)
                    )
            except Exception:  # the watcher must survive anything
                LOG.exception("netns watcher")

    # --- guests ---------------------------------------------------------------------------
    def spawn(self, context, instance, image_meta, injected_files, admin_password,
              allocations, network_info=None, block_device_info=None, power_on=True,
              accel_info=None):
        super().spawn(context, instance, image_meta, injected_files, admin_password,
                      allocations, network_info=network_info,
                      block_device_info=block_device_info, power_on=power_on,
                      accel_info=accel_info)
        t0 = time.monotonic()
        with self._transition(instance.uuid):
            vm = netns.Vm(self._data, instance.uuid)
            raw = base64.b64decode(instance.user_data) if instance.user_data else None
            volumes = {}
            for bdm in (block_device_info or {}).get("block_device_mapping") or []:
                with contextlib.suppress(exception.VolumeUnattached):
                    volumes[_volume_id(bdm["connection_info"])] = os.path.basename(
                        bdm.get("mount_device") or "")
            flavor = instance.flavor
            vm.state = {
                "uuid": instance.uuid,
                "name": instance.name,
                "host": CONF.host,
                "hostname": instance.hostname or instance.uuid[:8],
                "flavor": {"vcpus": flavor.vcpus, "memory_mb": flavor.memory_mb,
                           "root_gb": flavor.root_gb},
                "vifs": [netns.vif_from_network_info(vif, f"eth{i}")
                         for i, vif in enumerate(network_info or [])],
                "volumes": volumes,
                "power": "stopped",
            }
            try:
                vm.prepare_dirs()
                manifest = netns.apply_image(vm, self._image_file(context, image_meta))
                vm.state["binds"] = manifest.get("binds") or {}
                plan = netns.parse_user_data(raw)
                # personality / config-drive files (Octavia's amphora config and certs):
                # cloud-init writes them at first boot, before user_data
                plan["write_files"][:0] = [
                    {"path": path,
                     "content_b64": base64.b64encode(
                         data if isinstance(data, bytes) else str(data).encode()).decode(),
                     "permissions": "0600", "owner": "root:root", "append": False}
                    for path, data in injected_files or []
                ]
                (vm.dir / "boot.json").write_text(json.dumps(plan))
                vm.save()
                netns.ensure_network(vm)
                if power_on:
                    self._boot(vm)
            except Exception as e:
                LOG.error("guest %s failed to boot: %s", instance.uuid, e)
                with contextlib.suppress(Exception):
                    netns.destroy(vm)
                super().destroy(context, instance, network_info)
                raise exception.InstanceDeployFailure(reason=str(e)) from e
        LOG.info("guest %s spawned in %.2fs", instance.uuid, time.monotonic() - t0)

    def _image_file(self, context, image_meta) -> Path:
        """The image's data, fetched from Glance once per image (a cache: safe to lose)."""
        image_id = getattr(image_meta, "id", None) or "none"
        path = self._data / "images" / image_id
        if not path.exists():
            from nova.virt import images

            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{image_id}.{os.getpid()}.{threading.get_ident()}.tmp")
            images.fetch(context, image_id, str(tmp))
            tmp.replace(path)
        return path

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        super().destroy(context, instance, network_info, block_device_info=block_device_info,
                        destroy_disks=destroy_disks, destroy_secrets=destroy_secrets)
        with self._transition(instance.uuid):
            vm = netns.Vm(self._data, instance.uuid)
            if vm.exists():
                vm.load()
            else:  # no state (failed half-way): clean up by name
                vm.state = {"uuid": instance.uuid, "vifs": [
                    netns.vif_from_network_info(v, f"eth{i}")
                    for i, v in enumerate(network_info or [])]}
            netns.destroy(vm, keep_dir=not destroy_disks)
            proc = self._launchers.pop(instance.uuid, None)
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.wait(5)
            for vif in vm.vifs:
                self._interfaces.pop(vif["port_id"], None)

    def power_off(self, instance, timeout=0, retry_interval=0):
        if instance.uuid not in self.instances:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        with self._transition(instance.uuid):
            self._halt(self._vm(instance), grace=min(float(timeout or 0), MAX_STOP_GRACE))

    def power_on(self, context, instance, network_info, block_device_info=None,
                 accel_info=None, share_info=None):
        if instance.uuid not in self.instances:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        with self._transition(instance.uuid):
            self._boot(self._vm(instance))

    def reboot(self, context, instance, network_info, reboot_type, block_device_info=None,
               bad_volumes_callback=None, accel_info=None, share_info=None):
        vm = netns.Vm(self._data, instance.uuid)
        if not vm.exists():
            if reboot_type.lower() != "hard":
                raise exception.InstanceNotFound(instance_id=instance.uuid)
            # like libvirt: a hard reboot of a guest the hypervisor lost re-creates it
            self.instances.pop(instance.uuid, None)
            self.spawn(context, instance, instance.image_meta, None, None, None,
                       network_info=network_info, block_device_info=block_device_info)
            return
        if instance.uuid not in self.instances:
            self.instances[instance.uuid] = fake.FakeInstance(
                instance.name, power_state.SHUTDOWN, instance.uuid)
        with self._transition(instance.uuid):
            vm.load()
            grace = SOFT_REBOOT_GRACE if reboot_type.lower() == "soft" else 0
            self._halt(vm, grace=grace)
            self._boot(vm)

    def resume_state_on_host_boot(self, context, instance, network_info, share_info,
                                  block_device_info=None):
        """After ``sandbox down`` (which kills every guest) and ``up``: boot it again."""
        vm = netns.Vm(self._data, instance.uuid)
        if not vm.exists():
            return
        with self._transition(instance.uuid):
            self._boot(vm.load())

    def plug_vifs(self, instance, network_info):
        vm = netns.Vm(self._data, instance.uuid)
        if vm.exists():
            netns.ensure_network(vm.load())

    def get_info(self, instance, use_cache=True):
        if instance.uuid not in self.instances:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        inst = self.instances[instance.uuid]
        if instance.uuid not in self._busy and inst.state == power_state.RUNNING:
            vm = netns.Vm(self._data, instance.uuid)
            if not (vm.exists() and netns.is_running(vm.load())):
                inst.state = power_state.SHUTDOWN
        return super().get_info(instance, use_cache)

    def get_console_output(self, context, instance):
        vm = netns.Vm(self._data, instance.uuid)
        try:
            with open(vm.console, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 256 * 1024))
                return f.read()
        except FileNotFoundError:
            return b""

    # --- volumes --------------------------------------------------------------------------
    def default_root_device_name(self, instance, image_meta, root_bdm):
        """virtio names, as libvirt/KVM gives them: volumes then become /dev/vdb, /dev/vdc...
        (and appear in the guest at /mnt/vdb...), not Nova's fallback /dev/sdb."""
        return "/dev/vda"

    def attach_volume(self, context, connection_info, instance, mountpoint, disk_bus=None,
                      device_type=None, encryption=None):
        """The volume's directory appears at ``/mnt/<device>`` and ``/mnt/volumes/<id>``,
        at once in a running guest, at its next boot otherwise."""
        vid = _volume_id(connection_info)
        with self._lock(instance.uuid):
            vm = self._vm(instance)
            device = os.path.basename(mountpoint or "") or None
            vm.volumes[vid] = device
            vm.save()
            if netns.is_running(vm):
                netns.attach_live(vm, vid, device)
        super().attach_volume(context, connection_info, instance, mountpoint,
                              disk_bus=disk_bus, device_type=device_type, encryption=encryption)

    def detach_volume(self, context, connection_info, instance, mountpoint, encryption=None):
        vid = _volume_id(connection_info)
        with self._lock(instance.uuid):
            vm = netns.Vm(self._data, instance.uuid)
            if vm.exists():
                vm.load()
                device = vm.volumes.pop(vid, None)
                vm.save()
                if netns.is_running(vm):
                    netns.detach_live(vm, vid, device)
        super().detach_volume(context, connection_info, instance, mountpoint,
                              encryption=encryption)

    # --- interfaces -----------------------------------------------------------------------
    def attach_interface(self, context, instance, image_meta, vif):
        super().attach_interface(context, instance, image_meta, vif)
        with self._lock(instance.uuid):
            vm = self._vm(instance)
            if any(v["port_id"] == vif["id"] for v in vm.vifs):
                return
            entry = netns.vif_from_network_info(vif, netns.next_ifname(vm))
            vm.vifs.append(entry)
            vm.save()
            if netns.netns_exists(vm.netns):
                netns.plug_vif(vm.data_dir, vm.netns, entry, primary=len(vm.vifs) == 1)

    def detach_interface(self, context, instance, vif):
        super().detach_interface(context, instance, vif)
        with self._lock(instance.uuid):
            vm = netns.Vm(self._data, instance.uuid)
            if not vm.exists():
                return
            vm.load()
            for entry in [v for v in vm.vifs if v["port_id"] == vif["id"]]:
                netns.unplug_vif(vm.data_dir, entry)
                vm.vifs.remove(entry)
            vm.save()
