"""The flexinfra.io/v1alpha1 API: pydantic models are the single source of truth for the CRDs."""

GROUP = "flexinfra.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
