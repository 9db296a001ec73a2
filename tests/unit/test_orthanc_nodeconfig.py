"""Orthanc configuration rendering, storescu profiles, Orthanc IDs, argv builders: pure."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from drctl.errors import ConfigError
from drctl.pacs.orthanc import ids
from drctl.pacs.orthanc.load import FileSyntax, association_profile, batches, storescu_argv
from drctl.pacs.orthanc.nodeconfig import (
    POSTGRES_INDEX_PLUGIN,
    DicomTlsSpec,
    OrthancSpec,
    PostgresIndexSpec,
    render,
    write,
)
from drctl.pacs.orthanc.process import orthanc_argv, orthanc_env
from drctl.pacs.orthanc.rest import _query, _strip_userinfo

CT = "1.2.840.10008.5.1.4.1.1.2"
SC = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT = "1.2.840.10008.1.2.1"
J2K = "1.2.840.10008.1.2.4.91"
RLE = "1.2.840.10008.1.2.5"


def spec(**kw) -> OrthancSpec:
    base = dict(
        name="primary",
        aet="PRIMARY",
        dicom_port=4242,
        http_port=8042,
        storage_dir=Path("/srv/orthanc/storage"),
        index_dir=Path("/srv/orthanc/index"),
        modalities={"drctl": ("DRCTL", "127.0.0.1", 11112)},
    )
    base.update(kw)
    return OrthancSpec(**base)


def test_sandbox_defaults():
    config = render(spec())
    assert config["DicomAet"] == "PRIMARY" and config["DicomPort"] == 4242
    assert config["HttpPort"] == 8042 and config["HttpServerEnabled"] is True
    assert config["DicomServerEnabled"] is True and config["DicomCheckCalledAet"] is False
    assert config["StorageDirectory"] == "/srv/orthanc/storage"
    assert config["IndexDirectory"] == "/srv/orthanc/index"
    assert config["StorageCompression"] is False and config["StoreMD5ForAttachments"] is True
    assert config["RemoteAccessAllowed"] is False and config["AuthenticationEnabled"] is False
    assert config["StableAge"] == 1 and config["SaveJobs"] is True
    assert config["LimitFindResults"] == 0 and config["LimitFindInstances"] == 0
    for key in ("Find", "Store", "Get", "Move"):
        assert config[f"DicomAlwaysAllow{key}"] is False
    assert config["DicomModalities"] == {"drctl": ["DRCTL", "127.0.0.1", 11112]}
    assert config["DicomTlsEnabled"] is False
    assert "Plugins" not in config and "PostgreSQL" not in config
    assert "RegisteredUsers" not in config


def test_postgres_index_loads_the_plugin_and_keeps_storage_on_disk():
    pg = PostgresIndexSpec("127.0.0.1", 5432, "orthanc", "orthanc", "s3cret")
    config = render(spec(postgres=pg))
    assert config["Plugins"] == [POSTGRES_INDEX_PLUGIN]
    assert config["PostgreSQL"] == {
        "EnableIndex": True,
        "EnableStorage": False,
        "Host": "127.0.0.1",
        "Port": 5432,
        "Database": "orthanc",
        "Username": "orthanc",
        "Password": "s3cret",
        "Lock": False,
    }
    assert "s3cret" not in repr(pg) and "s3cret" not in repr(spec(postgres=pg))


def test_options_reach_the_config():
    tls = DicomTlsSpec(Path("/t/node.crt"), Path("/t/node.key"), Path("/t/peers.crt"), False)
    config = render(
        spec(
            compression=True,
            store_md5=False,
            limit_find_results=50,
            limit_find_instances=7,
            always_allow_find=True,
            save_jobs=False,
            concurrent_jobs=4,
            tls=tls,
            http_users={"admin": "pw"},
        )
    )
    assert config["StorageCompression"] is True and config["StoreMD5ForAttachments"] is False
    assert config["LimitFindResults"] == 50 and config["LimitFindInstances"] == 7
    assert config["DicomAlwaysAllowFind"] is True and config["DicomAlwaysAllowStore"] is False
    assert config["SaveJobs"] is False and config["ConcurrentJobs"] == 4
    assert config["DicomTlsEnabled"] is True
    assert config["DicomTlsCertificate"] == "/t/node.crt"
    assert config["DicomTlsPrivateKey"] == "/t/node.key"
    assert config["DicomTlsTrustedCertificates"] == "/t/peers.crt"
    assert config["DicomTlsRemoteCertificateRequired"] is False
    assert config["AuthenticationEnabled"] is True
    assert config["RegisteredUsers"] == {"admin": "pw"}


def test_remote_access_follows_the_host():
    assert render(spec(host="10.1.2.3"))["RemoteAccessAllowed"] is True
    assert render(spec(host="localhost"))["RemoteAccessAllowed"] is False
    assert spec(host="::1").rest_url == "http://[::1]:8042"


def test_extra_is_merged_last():
    config = render(spec(extra={"StableAge": 30, "OverwriteInstances": True}))
    assert config["StableAge"] == 30 and config["OverwriteInstances"] is True


def test_invalid_specs_are_refused_with_every_problem():
    with pytest.raises(ConfigError) as caught:
        spec(aet="A_MUCH_TOO_LONG_AE_TITLE", http_port=4242, limit_find_results=-1)
    keys = [key for key, _ in caught.value.problems]
    assert keys == ["aet", "http_port", "limit_find_results"]
    with pytest.raises(ConfigError):
        spec(modalities={"peer": ("PEER", "127.0.0.1", 0)})


def test_write_is_private_json(tmp_path):
    path = write(spec(postgres=PostgresIndexSpec("h", 5432, "d", "u", "pw")), tmp_path / "o.json")
    assert json.loads(path.read_text())["PostgreSQL"]["Password"] == "pw"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_orthanc_ids_match_values_read_from_orthanc_1_10():
    # Read from a running Orthanc 1.10.1 (GET /patients/{id}).
    assert ids.patient_id("PID000001") == "5cd25f7f-ffb9d374-ec225226-1e1ea642-5027bf61"
    assert ids.study_id("P", "1.2") == ids.orthanc_hash("P", "1.2")
    assert ids.instance_id("P", "1", "2", "3") != ids.series_id("P", "1", "2")
    assert ids.study_id("P ", "1.2\x00") == ids.study_id("P", "1.2")
    assert ids.is_orthanc_id(ids.patient_id("x")) and not ids.is_orthanc_id("abc")


def test_storescu_profile_proposes_each_compressed_syntax_as_stored():
    files = [
        FileSyntax(Path("a.dcm"), CT, EXPLICIT),
        FileSyntax(Path("b.dcm"), SC, J2K),
        FileSyntax(Path("c.dcm"), SC, RLE),
        FileSyntax(Path("d.dcm"), SC, J2K),
    ]
    text = association_profile(files)
    contexts = [line for line in text.splitlines() if re.match(r"PresentationContext\d", line)]
    assert contexts == [
        f"PresentationContext1 = {CT}\\TS1",
        f"PresentationContext2 = {CT}\\UNCOMPRESSED",
        f"PresentationContext3 = {SC}\\TS2",
        f"PresentationContext4 = {SC}\\UNCOMPRESSED",
        f"PresentationContext5 = {SC}\\TS3",
    ]
    assert f"[TS1]\nTransferSyntax1 = {EXPLICIT}" in text
    assert f"[TS2]\nTransferSyntax1 = {J2K}" in text
    assert f"[TS3]\nTransferSyntax1 = {RLE}" in text
    argv = storescu_argv(
        Path("p.cfg"), files, aet="NODE", host="127.0.0.1", port=4242, calling_aet="DRCTL"
    )
    assert argv[:8] == ["storescu", "-aet", "DRCTL", "-aec", "NODE", "-xf", "p.cfg", "DRCTL"]
    assert argv[-4:] == ["a.dcm", "b.dcm", "c.dcm", "d.dcm"]


def test_batches_respect_file_count_and_context_limit():
    same = [FileSyntax(Path(f"{i}.dcm"), CT, EXPLICIT) for i in range(7)]
    assert [len(b) for b in batches(same, 3)] == [3, 3, 1]
    many = [FileSyntax(Path(f"{i}.dcm"), f"1.2.3.{i}", EXPLICIT) for i in range(300)]
    sizes = [len(b) for b in batches(many, 1000)]
    assert sizes == [64, 64, 64, 64, 44]  # two contexts per SOP class


def test_orthanc_argv_and_environment():
    assert orthanc_argv(Path("/n/o.json")) == ["Orthanc", "/n/o.json"]
    assert orthanc_argv(Path("/n/o.json"), no_jobs=True) == ["Orthanc", "--no-jobs", "/n/o.json"]
    assert orthanc_env()["TCP_NODELAY"] == "1"


def test_rest_urls_never_carry_credentials():
    assert _strip_userinfo("http://admin:pw@127.0.0.1:8042/") == "http://127.0.0.1:8042/"
    assert _query({"expand": True, "since": 0, "limit": None, "x": False}) == "?expand&since=0"
