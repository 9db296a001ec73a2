"""Helpers shared by command modules."""

from __future__ import annotations

from drctl.errors import UsageError


def repositories_for(app, name: str | None) -> list[str]:
    """The named repository, or every configured one. UsageError when unknown/none."""
    repos = app.settings.repository
    if name:
        if name not in repos:
            raise UsageError(f"no repository named {name!r} in {app.settings.source} "
                             f"(known: {', '.join(repos) or 'none'})")
        return [name]
    if not repos:
        raise UsageError(f"no [repository.*] section in {app.settings.source}")
    return list(repos)


def primary_nodes_for(app, name: str | None, agent: str | None = None) -> list[str]:
    """The named node (must be a primary), or every primary (of ``agent``)."""
    nodes = app.settings.node
    if name:
        if name not in nodes:
            raise UsageError(f"no node named {name!r} in {app.settings.source} "
                             f"(known: {', '.join(nodes) or 'none'})")
        if nodes[name].role != "primary":
            raise UsageError(f"node {name} is a standby; back up its primary instead")
        return [name]
    found = [n for n, v in nodes.items() if v.role == "primary" and (agent is None or v.agent == agent)]
    if not found:
        raise UsageError(f"no primary node in {app.settings.source}")
    return found
