"""The catalog recognises a schema at the head revision without alembic (every drctl
command opens the catalog; importing alembic costs about half a second)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from drctl.catalog import db


def test_the_head_read_from_the_version_files_is_alembics_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    assert db._single_head() == ScriptDirectory.from_config(cfg).get_current_head()


def test_a_new_catalog_is_migrated_and_then_recognised_as_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = db.Catalog.open(url)
    try:
        assert catalog._at_head()
    finally:
        catalog.close()
    fresh = db.Catalog.open(f"sqlite:///{tmp_path / 'empty.db'}", migrate=False)
    try:
        assert not fresh._at_head()
    finally:
        fresh.close()
