"""The flexinfra.io/v1alpha1 API: pydantic models are the single source of truth for the CRDs."""

GROUP = "flexinfra.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
#: held by every object while it may own cloud resources (released after the tag sweep)
FINALIZER = f"{GROUP}/cleanup"
#: kopf keeps its progress and last-handled state in annotations under this prefix
ANNOTATION_PREFIX = GROUP
LAST_HANDLED_KEY = "last-handled-configuration"
#: on a WebSite: the generation of its SiteTemplate; a change wakes the site's handler at once
TEMPLATE_GENERATION_ANNOTATION = f"{GROUP}/template-generation"
#: on an object: the operator instance that took over its namespace (a change wakes its
#: handlers in the new instance, which saw no event while it stood by)
ACTING_INSTANCE_ANNOTATION = f"{GROUP}/acting-instance"
