"""PID 1 of a lab "VM" booted from user_data (stdlib only; run by /usr/bin/python3 under
``ip netns exec <ns> unshare --mount --pid --uts --kill-child --propagation private``).

It gives the node the sandbox's filesystem view (``SANDBOX.md``): overlays over ``/etc``,
``/usr``, ``/var``; persistent private ``/var/lib``, ``/var/log``, ``/mnt``, ``/root``; the data
volume at ``/mnt/vdb``; fresh tmpfs ``/run`` and ``/tmp``. Then cloud-init's semantics: at the
first boot ``write_files`` and ``runcmd``, at every later boot ``/etc/rc.local``. Then it reaps
children forever. Killing it (SIGKILL from the host) is a hard power-off of the whole VM.

    vminit.py <vm dir> <boot plan json> <hostname>
"""

import base64
import os
import socket
import subprocess
import sys
import time

_FDS: tuple[int, ...] = ()


def sh(*args):
    subprocess.run(args, check=True, pass_fds=_FDS)


def main():
    vmdir, plan_path, hostname = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(plan_path) as f:
        import json

        plan = json.load(f)
    # sources through a file descriptor: /tmp (where the lab lives) is about to be hidden
    global _FDS
    fd = os.open(vmdir, os.O_PATH | os.O_DIRECTORY)
    _FDS = (fd,)
    v = f"/proc/self/fd/{fd}"
    for d in ("etc", "usr", "var"):
        sh("mount", "-t", "overlay", "overlay", "-o",
           f"lowerdir=/{d},upperdir={v}/upper/{d},workdir={v}/work/{d}", f"/{d}")
    for d in ("var/lib", "var/log", "mnt", "root"):
        sh("mount", "--bind", f"{v}/priv/{d.replace('/', '-')}", f"/{d}")
    os.makedirs("/mnt/vdb", exist_ok=True)
    sh("mount", "--bind", f"{v}/volume", "/mnt/vdb")
    for d, mode in (("run", "0755"), ("tmp", "1777")):
        sh("mount", "-t", "tmpfs", "-o", f"mode={mode}", "tmpfs", f"/{d}")
    os.close(fd)
    _FDS = ()
    sh("mount", "-t", "proc", "proc", "/proc")
    socket.sethostname(hostname)
    log = open("/var/log/console.log", "a")  # noqa: SIM115
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "LANG": "C.UTF-8"}
    marker = "/var/lib/cloud/instance-boot-done"
    first = not os.path.exists(marker)
    rc_local = os.access("/etc/rc.local", os.X_OK)
    print(f"[vm {time.strftime('%T')}] boot ({'first' if first else 'again'})", flush=True)
    if first:
        for e in plan["write_files"]:
            os.makedirs(os.path.dirname(e["path"]), exist_ok=True)
            with open(e["path"], "wb") as f:
                f.write(base64.b64decode(e["content_b64"]))
            os.chmod(e["path"], int(e["permissions"], 8))
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w") as f:
            f.write("done\n")
        for i, script in enumerate(plan["scripts"]):
            path = f"/var/lib/cloud/part-{i:03d}"
            with open(path, "w") as f:
                f.write(script)
            os.chmod(path, 0o700)
            subprocess.call([path], env=env, stdin=subprocess.DEVNULL)
    elif rc_local:
        subprocess.call(["/etc/rc.local"], env=env, stdin=subprocess.DEVNULL)
    print(f"[vm {time.strftime('%T')}] boot finished", flush=True)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(1)


if __name__ == "__main__":
    main()
