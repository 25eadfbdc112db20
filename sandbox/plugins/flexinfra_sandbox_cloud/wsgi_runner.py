"""Serve an OpenStack WSGI module with an embedded gunicorn.

These releases ship WSGI modules (``keystone.wsgi.api``, ``neutron.wsgi.api``, ...) but no API
console scripts. Neutron, Cinder and Octavia read their config files from ``sys.argv`` at import
time, so a plain ``gunicorn`` command line (whose own options fill ``sys.argv``) breaks them.
This runner takes its own options, sets a clean ``sys.argv = [name, *service_args]`` and only
then imports the module, inside the worker.

    python -m flexinfra_sandbox_cloud.wsgi_runner --name neutron-api --module neutron.wsgi.api \
        --bind 127.0.0.1:9696 -- --config-file /path/neutron.conf
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gunicorn.app.base import BaseApplication


class Runner(BaseApplication):
    def __init__(self, opts: argparse.Namespace, service_args: list[str]):
        self.opts = opts
        self.service_args = service_args
        super().__init__()

    def load_config(self):
        o = self.opts
        settings = {
            "bind": o.bind,
            "workers": o.workers,
            "threads": o.threads,
            "worker_class": "gthread" if o.threads > 1 else "sync",
            # OpenStack calls can be slow (Nova waits on Neutron, Octavia on Nova)
            "timeout": o.timeout,
            "graceful_timeout": 5,
            # like the keep-alive timeouts of the proxies in front of real clouds (gunicorn's 2 s
            # default makes clients often reuse a connection the server is just closing)
            "keepalive": 30,
            "proc_name": o.name,
            "accesslog": "-" if o.access_log else None,
            "errorlog": "-",
            "loglevel": "info",
            # import the app in the worker: services start threads/connections at import
            "preload_app": False,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        sys.argv = [self.opts.name, *self.service_args]
        module = importlib.import_module(self.opts.module)
        return getattr(module, self.opts.attr)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        i = argv.index("--")
        own, service_args = argv[:i], argv[i + 1 :]
    else:
        own, service_args = argv, []
    p = argparse.ArgumentParser(prog="flexinfra-wsgi-runner")
    p.add_argument("--name", required=True, help="process name, also argv[0] for the service")
    p.add_argument("--module", required=True, help="WSGI module, e.g. keystone.wsgi.api")
    p.add_argument("--attr", default="application")
    p.add_argument("--bind", required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--timeout", type=int, default=300)
    p.add_argument("--access-log", action="store_true")
    opts = p.parse_args(own)
    # gunicorn parses sys.argv too (for its own options): give it nothing to parse
    sys.argv = [opts.name]
    Runner(opts, service_args).run()


if __name__ == "__main__":
    main()
