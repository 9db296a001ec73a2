"""Validate a loaded configuration further than its schema: resolve every secret reference
(proving it can be resolved, never returning it) and flag exposed secret files."""

from __future__ import annotations

from drctl import config as config_mod
from drctl.config import Settings, format_duration
from drctl.secrets import SecretUnavailable


def check_config(settings: Settings) -> dict:
    """A JSON-able report: items (one per section entry), secrets (ok/problem per
    reference, no values), warnings, and ``ok`` (False when a secret cannot be resolved)."""
    items = [{"section": "controller", "name": settings.controller.site,
              "summary": f"aet {settings.controller.aet}, catalog "
                         f"{_safe_url(settings.controller.catalog_url)}"}]
    for name, repo in settings.repository.items():
        keep = ", ".join(f"{k} {v}" for k, v in repo.retention.model_dump().items() if v)
        items.append({"section": "repository", "name": name,
                      "summary": f"{_safe_url(repo.url)}; keep {keep or 'everything'}; "
                                 f"check {repo.check_read_subset}"})
    for name, node in settings.node.items():
        items.append({"section": "node", "name": name,
                      "summary": f"{node.kind} {node.role}, agent {node.agent}, "
                                 f"{node.aet}@{node.host}:{node.port}, index {node.index_kind}"
                                 + (f" ({node.index_copy_method})" if node.role == "primary" else "")})
    for job in ("backup", "index_copy", "replicate", "check", "prune", "drill"):
        value = getattr(settings.schedule, job)
        if value:
            items.append({"section": "schedule", "name": job, "summary": value})
    items.append({"section": "drill", "name": settings.drill.mode,
                  "summary": f"scope {settings.drill.scope}, max RTO "
                             f"{format_duration(settings.drill.max_rto)}, max RPO "
                             f"{format_duration(settings.drill.max_rpo)}"})
    secrets, warnings, ok = [], [], True
    for ref in config_mod.secret_refs(settings):
        problem = None
        try:
            ref.resolve()
        except SecretUnavailable as exc:
            problem, ok = str(exc), False
        exposure = ref.exposure()
        if exposure:
            warnings.append(exposure)
        secrets.append({"key": ref.key, "reference": str(ref), "ok": problem is None,
                        "problem": problem})
    if settings.controller.phi_key is None and settings.primaries():
        warnings.append("controller.phi_key is not set: patient IDs cannot be hashed, so "
                        "backups record no patient hash (restore --patient-id will not work)")
    return {"source": settings.source, "site": settings.controller.site, "ok": ok,
            "items": items, "secrets": secrets, "warnings": warnings}


def _safe_url(url: str) -> str:
    """A URL without credentials (user:password@ parts)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        creds, _, host = rest.partition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url
