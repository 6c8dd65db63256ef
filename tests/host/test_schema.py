"""The host store's tables: what the code queries (the migrations build exactly these, see
test_migrate)."""

from __future__ import annotations

from sevlaunch.host.schema import domains, metadata, secrets, timeline


def test_the_tables_and_their_keys() -> None:
    assert sorted(metadata.tables) == ["domains", "secrets", "timeline"]
    assert [c.name for c in domains.primary_key] == ["uuid"]
    assert [c.name for c in secrets.primary_key] == ["uuid"]
    assert {i.name: [c.name for c in i.columns] for i in timeline.indexes} == {
        "ix_timeline_domain_launch": ["domain", "launch"]
    }
    assert "value" not in secrets.columns  # values live in 0600 files, never in the database
