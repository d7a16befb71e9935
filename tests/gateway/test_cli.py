"""The obmin command line: exit codes and messages that name what is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_pki_init_then_refuse_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBMIN_PKI_PASSPHRASE", "cli test passphrase")
    assert main(["pki", "init", "--dir", str(tmp_path / "pki")]) == 0
    assert (tmp_path / "pki" / "ca" / "ca.crt").is_file()
    assert main(["pki", "init", "--dir", str(tmp_path / "pki")]) == 1
    assert "obmin:" in capsys.readouterr().err
    assert main(["pki", "issue-member", "SEVDEIR-TEST/GOV/12345678", "--name", "Ministry",
                 "--dir", str(tmp_path / "pki")]) == 0  # fmt: skip
    assert (tmp_path / "pki" / "members" / "12345678" / "sign.crt").is_file()
    assert main(["pki", "issue-member", "SEVDEIR-TEST/GOV/12 34", "--name", "Bad",
                 "--dir", str(tmp_path / "pki")]) == 1  # fmt: skip
    assert "not allowed" in capsys.readouterr().err


def test_registry_check_of_the_example(
    dev_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The example registry points at var/pki/ca/ca.crt three levels up; lay it out the same.
    root = tmp_path / "repo"
    shutil.copytree(REPO / "config" / "example", root / "config" / "example")
    (root / "var" / "pki" / "ca").mkdir(parents=True)
    shutil.copy(dev_pki / "ca" / "ca.crt", root / "var" / "pki" / "ca" / "ca.crt")
    assert main(["registry", "check", str(root / "config" / "example" / "registry")]) == 0
    assert capsys.readouterr().out.startswith("registry OK:")

    (root / "var" / "pki" / "ca" / "ca.crt").unlink()
    assert main(["registry", "check", str(root / "config" / "example" / "registry")]) == 1
    out = capsys.readouterr().out
    assert "10-trust.yaml" in out and "trust_anchors[0].certificate" in out


def test_wrong_settings_stop_with_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("registry_dir: nowhere\nkeys: {signing_certificate: a, signing_key: b}\n")
    assert main(["serve", "-c", str(config)]) == 1
    assert "registry_dir" in capsys.readouterr().err


def test_bench_passes_its_options_to_the_benchmark(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `obmin bench NAME --option N` used to be refused by argparse ("unrecognized arguments").
    monkeypatch.chdir(REPO)  # benchmarks run from a source checkout
    code = main(["bench", "registry-load", "--services", "40", "--providers", "4"])
    out = capfd.readouterr().out
    assert code == 0, out
    assert "40 services" in out
