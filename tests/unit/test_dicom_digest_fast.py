"""drctl.dicom.digest_fast gives exactly the digest of the reference path (pydicom's
reader) or steps aside: on pydicom's test files, sample archives in every syntax, the
same datasets re-encoded with defined and undefined lengths, and thousands of mutated
files (flipped, deleted, inserted bytes, truncations)."""

from __future__ import annotations

import hashlib
import random
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom.data
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from drctl.dicom import digest, digest_fast
from drctl.sample import generate
from tests.support.part10 import part10_bytes

MUTATIONS = 2500
# pydicom's bundled files (get_testdata_files would also try to download more)
BUNDLED = Path(pydicom.data.__file__).parent / "test_files"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _reference(data: bytes) -> tuple[str, object]:
    """file_digest through pydicom's reader only."""
    saved = digest_fast.dataset_digest, digest_fast.file_meta

    def unusual(*_args, **_kwargs):
        raise digest_fast.Unusual("reference path forced")

    digest_fast.dataset_digest = digest_fast.file_meta = unusual
    try:
        return _outcome(data)
    finally:
        digest_fast.dataset_digest, digest_fast.file_meta = saved


def _outcome(data: bytes) -> tuple[str, object]:
    try:
        return "digest", digest.file_digest(data)
    except Exception as exc:  # the kind of error is part of the outcome
        return "error", type(exc).__name__


def _fast_only(data: bytes) -> str:
    """The digest by the fast path alone (raises Unusual where it steps aside)."""
    offset, syntax, _, _ = digest_fast.file_meta(data)
    sha = hashlib.sha256()
    digest_fast.dataset_digest(data[offset:], syntax == ImplicitVRLittleEndian, sha.update, {})
    return sha.hexdigest()


def _written(name: str, syntax: str, undefined: bool | None) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(get_testdata_file(name, download=False))
    return part10_bytes(ds, syntax, undefined_lengths=undefined)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """pydicom's test files, a sample archive (every template drctl loads) and
    re-encodings with defined and undefined sequence lengths."""
    files = [path.read_bytes() for path in sorted(BUNDLED.rglob("*.dcm"))]
    sample = generate(tmp_path_factory.mktemp("digest-fast"), studies=8, seed=5)
    files += [p.read_bytes() for p in sample.paths]
    for name in ("rtplan.dcm", "test-SR.dcm", "nested_priv_SQ.dcm", "priv_SQ.dcm"):
        for syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian):
            files += [_written(name, syntax, undefined) for undefined in (True, False)]
    return files


def test_every_file_digests_as_the_reference_does(corpus: list[bytes]) -> None:
    differing = [i for i, data in enumerate(corpus) if _outcome(data) != _reference(data)]
    assert differing == []


def test_the_fast_path_takes_sample_archives_and_sequences(
    corpus: list[bytes], tmp_path: Path
) -> None:
    sample = generate(tmp_path, studies=6, seed=9)
    for path in sample.paths:
        assert _fast_only(path.read_bytes()) == _reference(path.read_bytes())[1].digest
    for name in ("rtplan.dcm", "nested_priv_SQ.dcm"):
        for undefined in (True, False):
            data = _written(name, ImplicitVRLittleEndian, undefined)
            assert _fast_only(data) == _reference(data)[1].digest


def _mutations(corpus: list[bytes], count: int) -> Iterator[bytes]:
    rng = random.Random(20260)
    small = [data for data in corpus if 200 < len(data) < 400_000]
    for _ in range(count):
        data = bytearray(rng.choice(small))
        kind = rng.randrange(4)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(data))
            if kind == 0:
                data[pos] = rng.randrange(256)
            elif kind == 1:
                del data[pos : pos + rng.randint(1, 16)]
            elif kind == 2:
                data[pos:pos] = rng.randbytes(rng.randint(1, 8))
            else:
                del data[max(pos, 1) :]
        yield bytes(data)


def test_mutated_files_digest_or_fail_as_the_reference_does(corpus: list[bytes]) -> None:
    differing = 0
    for data in _mutations(corpus, MUTATIONS):
        if _outcome(data) != _reference(data):
            differing += 1
    assert differing == 0
