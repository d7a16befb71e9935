"""The settings shown in docs/auditor-guide.md are valid settings."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gateway.settings import Settings

GUIDE = Path(__file__).parents[2] / "docs" / "auditor-guide.md"


def test_every_settings_example_in_the_auditor_guide_validates(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        example = yaml.safe_load(block)
        settings = Settings.model_validate(
            {
                "registry_dir": tmp_path,
                "keys": {"signing_certificate": "a.crt", "signing_key": "a.key"},
                **example,
            }
        )
        assert settings.model_dump(exclude_unset=True).keys() >= example.keys()
