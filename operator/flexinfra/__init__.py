"""flexinfra: a Kubernetes operator that keeps a highly available web tenant on OpenStack."""

__version__ = "0.1.0"
