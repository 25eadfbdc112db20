"""Nodes booted from the operator's user_data (as the sandbox's VMs boot it) on real MariaDB +
galera-4: the agent's desired state survives a power cycle (a rebooted node rejoins by itself)
and a full power outage is not bootstrapped by anyone but the operator's decision."""

from __future__ import annotations

import json
import os
import time

import pytest

from flexinfra.galera import decide as d
from tests.galera.drive import (
    DB,
    PASSWORD,
    USER,
    Driver,
    RowWriter,
    assert_no_reversed_history,
    assert_rows_everywhere,
    connect,
)
from tests.galera.test_galera_real import health, pytestmark  # noqa: F401  (markers)
from tests.galera.vmlab import VmLab

TIMINGS: dict[str, object] = {}


@pytest.fixture(scope="module")
def vms():
    lab = VmLab(cluster="fxgtvm")
    try:
        lab.start(settings=(("innodb_buffer_pool_size", "32M"),))
        yield lab
    finally:
        lab.close()
        print("\ngalera VM timings:", json.dumps(TIMINGS, indent=1))
        if os.environ.get("FXGT_TIMINGS"):
            path = os.environ["FXGT_TIMINGS"] + ".vm"
            with open(path, "w") as f:
                json.dump(TIMINGS, f, indent=1)


@pytest.fixture(scope="module")
def driver(vms):
    return Driver(vms)


def test_boot_from_user_data_and_bootstrap(vms, driver):
    for n in vms.nodes:
        st = n.status()
        assert st["desired"] == "stopped" and st["data_mounted"] is True
        assert not st["mariadbd"]["running"]
        assert "boot (first)" in vms.console(n)
    TIMINGS["user_data_bytes"] = max(vms.user_data_sizes.values())
    t0 = time.monotonic()
    driver.run_until(driver.healthy, 120, "3 Synced VMs")
    TIMINGS["vm_bootstrap_to_3_synced_s"] = round(time.monotonic() - t0, 1)
    driver.node(driver.writer).client.ensure_database(DB, USER, PASSWORD, "%")
    conn = connect(driver.node(driver.writer))
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, writer VARCHAR(16))")
    conn.close()
    # the data lives on the volume, the agent's desired state next to it
    for n in vms.nodes:
        assert (n.root / "volume/mysql/grastate.dat").exists()
        state = json.loads((n.root / "volume/flexinfra-agent/state.json").read_text())
        assert state["desired"] == "member"
    pid = vms.agent_pid(vms.nodes[0])
    if pid:
        with open(f"/proc/{pid}/status") as f:
            TIMINGS["agent_rss_kib"] = next(int(x.split()[1]) for x in f
                                            if x.startswith("VmRSS"))


def test_power_cycled_node_rejoins_by_itself(vms, driver):
    victim = next(n for n in vms.nodes if n.name != driver.writer)
    with RowWriter(driver, start_id=1) as w:
        w.wait_rows(50)
        t0 = time.monotonic()
        vms.power_off(victim)
        vms.wait(lambda: health(victim) != 200 if _reachable(victim) else True, 5, "down")
        w.wait_rows(20, timeout=30)
        vms.power_on(victim)
        vms.wait(lambda: vms.all_synced(), 120, "the rebooted VM Synced again")
        TIMINGS["vm_power_cycle_non_writer_to_synced_s"] = round(time.monotonic() - t0, 1)
        w.wait_rows(50)
    console = vms.console(victim)
    assert "boot (again)" in console, "the second boot runs /etc/rc.local"
    st = victim.status()
    assert st["mariadbd"]["auto_starts"] == 1, "the agent restarted mariadbd on its own"
    assert_rows_everywhere(vms, w.acked)
    test_power_cycled_node_rejoins_by_itself.acked = w.acked


def _reachable(n) -> bool:
    try:
        health(n)
        return True
    except OSError:
        return False


def test_full_power_outage_waits_for_the_operator(vms, driver):
    acked = list(getattr(test_power_cycled_node_rejoins_by_itself, "acked", []))
    with RowWriter(driver, start_id=100_000, pause=0) as w:
        w.wait_rows(200)
        for n in vms.nodes:
            vms.power_off(n)
        time.sleep(0.3)
    acked += w.acked
    t0 = time.monotonic()
    for n in vms.nodes:
        vms.power_on(n)
    for n in vms.nodes:
        vms.wait(lambda n=n: vms._answers(n), 30, f"agent of {n.name} back")
    TIMINGS["vm_full_outage_boot_to_agents_s"] = round(time.monotonic() - t0, 1)
    # every agent comes back wanting to be a member, and none starts mariadbd: no Primary
    vms.wait(lambda: all(n.status()["recovered"] for n in vms.nodes), 30, "positions")
    time.sleep(2)
    for n in vms.nodes:
        st = n.status()
        assert st["desired"] == "member" and not st["mariadbd"]["running"], st
        assert st["rejoin"]["waiting"]
    driver.run_until(driver.healthy, 180, "3 Synced after the power outage")
    TIMINGS["vm_full_outage_boot_to_3_synced_s"] = round(time.monotonic() - t0, 1)
    boots = [(a, obs) for a, obs in driver.actions if isinstance(a, d.BootstrapFrom)]
    assert len(boots) == 1
    boot, obs = boots[0]
    assert all(boot.position.seqno >= n.recovered.seqno for n in obs.nodes)
    TIMINGS["vm_full_outage_recovered"] = {n.name: n.recovered.seqno for n in obs.nodes}
    assert_rows_everywhere(vms, acked)
    assert_no_reversed_history(vms)
