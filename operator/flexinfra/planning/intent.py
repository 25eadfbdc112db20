"""From the API models (WebSiteSpec + SiteTemplateSpec) to the planner's ``SiteIntent``.

Kept apart so the planner depends on plain data only; the hash is what decides whether a server
is current: anything that can only change by rebuilding a server goes into it.
"""

from __future__ import annotations

import hashlib
import json

from flexinfra.cloud.tags import Owner
from flexinfra.planning.model import HealthCheckIntent, SiteIntent


def template_hash(template, anti_affinity: str, volume_size_gb: int | None) -> str:
    """12 hex chars over what a server is made of (image, flavor, boot script, keys, group)."""
    material = {
        "image": template.image,
        "flavor": template.flavor,
        "user_data": template.user_data,
        "key_name": template.key_name,
        "metadata": dict(sorted(template.metadata.items())),
        "anti_affinity": anti_affinity,
        "volume": bool(volume_size_gb),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:12]


def _user_data(template, volume_size_gb: int | None) -> str | None:
    text = template.user_data or None
    if text and volume_size_gb and text.startswith("#!"):
        first, _, rest = text.partition("\n")
        path = getattr(template, "volume_mount_path", "/srv/data")
        text = f"{first}\nexport FLEXINFRA_VOLUME_PATH={path}\n{rest}"
    return text


def site_intent(owner: Owner, spec, template) -> SiteIntent:
    lb = spec.load_balancer
    hc = lb.health_check
    anti_affinity = str(spec.anti_affinity)
    return SiteIntent(
        prefix=owner.prefix,
        owner_uid=owner.uid,
        replicas=spec.replicas,
        availability_zones=tuple(spec.availability_zones),
        cidr=spec.network.cidr,
        existing_network=spec.network.existing_network,
        external_network=spec.network.external_network,
        dns_nameservers=tuple(spec.network.dns_nameservers),
        image=template.image,
        flavor=template.flavor,
        user_data=_user_data(template, spec.storage.volume_size_gb),
        key_name=template.key_name,
        server_metadata=dict(template.metadata),
        template_ports=tuple((p.port, str(p.protocol).lower()) for p in template.ports),
        ingress=tuple((rule.port, str(rule.protocol).lower(), rule.from_) for rule in spec.ingress),
        lb_ports=tuple(lb.ports),
        lb_protocol=str(lb.protocol),
        lb_algorithm=str(lb.algorithm),
        health_check=HealthCheckIntent(
            type=str(hc.type),
            path=hc.path,
            delay=hc.delay,
            timeout=hc.timeout,
            max_retries=hc.max_retries,
            expected_codes=hc.expected_codes,
        ),
        public_ip=spec.public_ip.enabled,
        retain_ip=spec.public_ip.retain,
        volume_size_gb=spec.storage.volume_size_gb,
        volume_type=spec.storage.volume_type,
        anti_affinity=anti_affinity,
        template_hash=template_hash(template, anti_affinity, spec.storage.volume_size_gb),
        domains=tuple(spec.domains),
        retained_tag=owner.retained_tag,
    )


def spec_problems(intent: SiteIntent) -> list[str]:
    """What is wrong with the spec whatever the cloud holds."""
    problems = []
    declared = {port for port, _ in intent.template_ports}
    missing = [p for p in intent.lb_ports if p not in declared]
    if missing:
        problems.append(
            f"loadBalancer.ports {missing} are not served by the SiteTemplate (its ports: "
            f"{sorted(declared)}); add them to the template or remove them from the site"
        )
    return problems
