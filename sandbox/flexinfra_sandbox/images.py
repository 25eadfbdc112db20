"""Glance images whose data is a tar of files: what a sandbox VM booted from them sees.

A sandbox VM sees the host's filesystem (its "image" is the host), with its writes kept in
its own overlay. An image built here adds files on top, the way a real image's contents
would: the Nova driver fetches the image from Glance at the server's first boot and lays the
tar over the VM's overlay and private dirs (``plugins/.../netns.py: apply_image``). Its
manifest (``etc/flexinfra-sandbox/image.json``) names host paths bound read-only into the VM.

The one such image is Octavia's **amphora**: ``sandbox/images/amphora/`` (a ``systemctl``
and a SysV script for the agent, since the VMs run no systemd; a haproxy limits file; links
to the agent's commands) plus binds of the OpenStack venv at ``/opt/openstack`` (the real
``amphora-agent`` of the pinned Octavia) and of the host's dpkg database (the agent asks
``dpkg-query`` for haproxy's and keepalived's versions).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from flexinfra_sandbox.paths import SandboxPaths

AMPHORA_TAG = "amphora"
DIGEST_PROPERTY = "flexinfra_sandbox_digest"
MANIFEST = "etc/flexinfra-sandbox/image.json"


def _add_tree(tar: tarfile.TarFile, root: Path) -> None:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        info = tar.gettarinfo(str(path), arcname=rel)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0  # the same tree gives the same bytes, so the same digest
        if info.isfile():
            with path.open("rb") as f:
                tar.addfile(info, f)
        else:
            tar.addfile(info)


def build_amphora_image(paths: SandboxPaths) -> tuple[bytes, str]:
    """(tar bytes, digest) of the amphora image for this sandbox's OpenStack venv."""
    manifest = {
        "binds": {
            "/opt/openstack": str(paths.openstack_venv),
            "/var/lib/dpkg": "/var/lib/dpkg",
        }
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_tree(tar, paths.files / "images" / "amphora")
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, hashlib.sha256(raw).hexdigest()[:16]


def ensure_amphora_image(admin, paths: SandboxPaths, owner: str) -> str:
    """The amphora image for the current tree and venv is in Glance, tagged ``amphora`` (the
    tag Octavia boots from), owned by the service project; older ones are removed. Returns
    its id. Amphorae already running keep working (Nova copied what they booted from)."""
    data, digest = build_amphora_image(paths)
    tagged = [i for i in admin.image.images(tag=AMPHORA_TAG)]
    current = next((i for i in tagged if (i.properties or {}).get(DIGEST_PROPERTY) == digest
                    or getattr(i, DIGEST_PROPERTY, None) == digest), None)
    if current is None:
        current = admin.image.create_image(
            name=f"amphora-{digest[:8]}", data=data, disk_format="raw", container_format="bare",
            visibility="private", tags=[AMPHORA_TAG], wait=True, allow_duplicates=True,
            **{DIGEST_PROPERTY: digest},
        )  # fmt: skip
        if current.owner != owner:
            admin.image.update_image(current, owner=owner)
    for old in tagged:
        if old.id != current.id:
            admin.image.delete_image(old, ignore_missing=True)
    return current.id
