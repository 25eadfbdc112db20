"""Run ``flexinfra plan -f`` on the examples against the in-memory OpenStack and print what it
prints. Run by test_plan_cli in a fresh interpreter, and, to record the golden file, with the
code from before the refactor on PYTHONPATH (``git archive <commit> operator``)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
INVALID = """
apiVersion: flexinfra.io/v1alpha1
kind: WebSite
metadata: {name: broken, namespace: fixweb}
spec:
  cloud: {secretName: tenant-fixweb, cloudName: demo}
  template: web
  network: {existingNetwork: nowhere}
---
apiVersion: flexinfra.io/v1alpha1
kind: WebSite
metadata: {name: typo, namespace: fixweb}
spec:
  cloud: {secretName: tenant-fixweb, cloudName: demo}
  template: web
  replica: 3
  network: {cidr: 10.10.9.0/24}
"""


def main() -> int:
    sys.path.insert(0, str(REPO))
    import flexinfra.cloud.connection as connection
    from flexinfra.cloud.gateway import Gateway
    from flexinfra.plan_cli import plan
    from tests.fakecloud import FakeCloud

    gateway = Gateway(FakeCloud().connection(), label="fake", rate=1e6, burst=10**6)
    connection.connection_cache.get = lambda *_, **__: gateway
    with tempfile.TemporaryDirectory() as tmp:
        clouds = Path(tmp) / "clouds.yaml"
        clouds.write_text("clouds: {}\n")
        os.environ.update(OS_CLIENT_CONFIG_FILE=str(clouds), KUBECONFIG="/nonexistent")
        os.environ.pop("OS_CLOUD", None)
        manifest = Path(tmp) / "site.yaml"
        manifest.write_text("\n---\n".join(
            [(REPO / "examples" / n).read_text() for n in ("sitetemplate-web.yaml",
                                                           "website-client-a.yaml")]
            + [INVALID]
        ))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = plan(types.SimpleNamespace(filename=str(manifest), cloud=None))
    sys.stdout.write(out.getvalue() + f"exit status {status}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
