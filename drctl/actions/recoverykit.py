"""``drctl recovery-kit --out DIR``: what a fresh machine needs to recover without this
controller — the configuration (secrets are references in it, never values), where the
repositories are, escrow instructions for every secret, the snapshots known today, and
the break-glass runbook. Print it, store it offsite, keep it with the escrowed secrets.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from drctl import __version__
from drctl import config as config_mod
from drctl.actions.context import Context
from drctl.actions.snapshots import list_snapshots
from drctl.errors import DrctlError, UsageError

# the runbooks: beside the package in a source checkout, under <prefix>/share when installed
RUNBOOK_DIRS = (Path(__file__).resolve().parents[2] / "runbooks",
                Path(sys.prefix) / "share" / "drctl" / "runbooks")

PURPOSE = {
    "password": "restic repository password: without it the backups cannot be read",
    "aws_access_key_id": "S3 key for backups (write, no delete)",
    "aws_secret_access_key": "S3 secret for backups (write, no delete)",
    "phi_key": "key of the patient-ID hashes (restore --patient-id needs it)",
    "catalog_password": "password of the PostgreSQL catalog",
    "index_password": "password of a PACS index database",
    "rest_password": "password of a PACS REST API",
    "webhook": "alert webhook URL",
    "key": "private key for DICOM TLS",
    "sandbox_postgres_password": "password of the sandbox PostgreSQL server",
}


def _escrow(settings) -> list[dict]:
    rows = []
    for ref in config_mod.secret_refs(settings):
        leaf = ref.key.rsplit(".", 1)[-1]
        rows.append({"key": ref.key, "reference": str(ref),
                     "what": PURPOSE.get(leaf, "secret"),
                     "provide": {"env": f"set the environment variable {ref.target}",
                                 "file": f"write it to {ref.target} (mode 0600)",
                                 "command": f"make `{ref.target}` print it"}[ref.scheme]})
    return rows


def _repositories(settings) -> list[dict]:
    from drctl.actions.configcheck import _safe_url

    return [{"name": name, "url": _safe_url(repo.url), "retention": repo.retention.model_dump(),
             "check_read_subset": repo.check_read_subset,
             "raw_restic": f"RESTIC_REPOSITORY='{_safe_url(repo.url)}' RESTIC_PASSWORD_FILE=... "
                           "restic snapshots --tag drctl"}
            for name, repo in settings.repository.items()]


def write_kit(ctx: Context, out: Path) -> dict:
    """Write the kit into ``out`` (created; must be empty or absent). Returns its index."""
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; choose a new folder for the recovery kit")
    out.mkdir(parents=True, exist_ok=True)
    settings = ctx.settings
    shutil.copyfile(settings.source, out / "drctl.toml")
    (out / "drctl.toml").chmod(0o600)
    try:
        snapshots = [s.to_json() for s in list_snapshots(ctx)]
    except DrctlError:
        snapshots = []
    index = {
        "format": "drctl-recovery-kit/1", "site": ctx.site, "drctl": __version__,
        "written_at": datetime.now(UTC).isoformat(), "config": "drctl.toml",
        "repositories": _repositories(settings), "escrow": _escrow(settings),
        "nodes": {n: {"kind": v.kind, "role": v.role, "agent": v.agent, "aet": v.aet,
                      "host": v.host, "port": v.port, "storage": str(v.storage),
                      "index": v.index.split("@")[-1] if "@" in v.index else v.index}
                  for n, v in settings.node.items()},
        "snapshots_known": snapshots,
    }
    (out / "kit.json").write_text(json.dumps(index, indent=2))
    (out / "ESCROW.md").write_text(_escrow_text(index))
    (out / "README.md").write_text(_readme_text(index))
    runbooks = next((d for d in RUNBOOK_DIRS if d.is_dir()), None)
    if runbooks is not None:
        shutil.copytree(runbooks, out / "runbooks")
    sums = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}
    (out / "SHA256SUMS").write_text("".join(f"{h}  {p}\n" for p, h in sums.items()))
    return {"out": str(out), "files": sorted(sums), "secrets_listed": len(index["escrow"]),
            "snapshots_known": len(snapshots)}


def _escrow_text(index: dict) -> str:
    lines = ["# Secrets to escrow (their values are NOT in this kit)", "",
             "Keep each value in the escrow (safe, vault, sealed envelope) named for your site.",
             "On a recovery machine, provide each one as its reference says, then run",
             "`drctl --config drctl.toml config check`.", "",
             "| key | reference | what it is | how to provide it |", "| --- | --- | --- | --- |"]
    for row in index["escrow"]:
        lines.append(f"| `{row['key']}` | `{row['reference']}` | {row['what']} | {row['provide']} |")
    lines += ["", "The restic password is the one secret without which nothing can be "
              "recovered. Test the escrow at every drill review."]
    return "\n".join(lines) + "\n"


def _readme_text(index: dict) -> str:
    repos = "\n".join(f"- `{r['name']}`: {r['url']}" for r in index["repositories"])
    return f"""# drctl recovery kit — site {index['site']}

Written {index['written_at']} by drctl {index['drctl']}. It holds no secret.

Repositories:
{repos}

## Break glass: recover on a new machine

1. Install drctl (the project's `scripts/bootstrap` on Debian, or `pip install drctl`).
2. Provide every secret listed in `ESCROW.md` as its reference says.
3. Check: `drctl --config drctl.toml config check` then `drctl --config drctl.toml doctor`.
4. Rebuild the catalog from the repository alone: `drctl --config drctl.toml catalog rebuild`.
5. See what can be recovered: `drctl --config drctl.toml snapshots list`.
6. Recover: one study with `drctl --config drctl.toml restore study STUDY_UID --to NODE`,
   or a whole site with the failover runbook (`runbooks/`).

Without drctl, restic alone can list and restore the snapshots (`kit.json`, `raw_restic`):
storage snapshots are tagged `kind:storage`, index copies `kind:index`, manifests
`kind:manifest`.
"""
