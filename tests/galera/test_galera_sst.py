"""``sst_method = mariabackup`` on real Galera: joiners get a hot backup of a node holding
data, with no SST password anywhere (mariadbd runs as ``mysql``, and
``mariadb-install-db --auth-root-authentication-method=socket`` gives that OS user a unix_socket
account, which the SST script's mariabackup uses)."""

from __future__ import annotations

import time

import pytest

from flexinfra.galera import decide as d
from tests.galera.drive import DB, PASSWORD, USER, Driver, assert_rows_everywhere, connect
from tests.galera.lab import Lab
from tests.galera.test_galera_real import pytestmark  # noqa: F401  (markers)


@pytest.fixture(scope="module")
def lab():
    lab = Lab(cluster="fxgtmb")
    try:
        lab.start(settings=(("innodb_buffer_pool_size", "32M"),), sst_method="mariabackup")
        yield lab
    finally:
        lab.close()


def test_mariabackup_sst_without_a_password(lab):
    driver = Driver(lab)
    first = driver.step()
    assert [type(a) for a in first.actions] == [d.BootstrapNewCluster]
    seed = lab.nodes[0]
    seed.client.ensure_database(DB, USER, PASSWORD, "%")
    conn = connect(seed)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, writer VARCHAR(16))")
        cur.executemany("INSERT INTO t VALUES (%s, 'seed')", [(i,) for i in range(500)])
    conn.close()
    t0 = time.monotonic()
    driver.run_until(driver.healthy, 150, "3 Synced by mariabackup SST")
    print(f"\nmariabackup SST: 2 joiners Synced in {time.monotonic() - t0:.1f}s")
    assert_rows_everywhere(lab, list(range(500)))
    for n in lab.nodes[1:]:
        log = n.error_log.read_text(errors="replace")
        assert "mariabackup SST started on joiner" in log, n.name
        assert "mariabackup SST completed on joiner" in log, n.name
