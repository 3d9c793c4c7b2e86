"""The conformance fixtures copied into the repository match the project's shared ones."""
import hashlib
from pathlib import Path

import pytest

from conftest import CONFORMANCE_DIR

SHARED = Path(__file__).resolve().parents[2] / "shared" / "conformance"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/conformance beside this clone")
def test_copies_match_shared_conformance():
    shared = {p.name: _digest(p) for p in SHARED.iterdir() if p.is_file()}
    copied = {p.name: _digest(p) for p in CONFORMANCE_DIR.iterdir() if p.is_file()}
    assert copied == shared, "re-copy ../shared/conformance/* into tests/data/conformance/"


def test_every_fixture_has_its_expected_values():
    arrays = {p.stem for p in CONFORMANCE_DIR.glob("*.npz")}
    expected = {p.name[: -len(".expected.json")] for p in CONFORMANCE_DIR.glob("*.expected.json")}
    assert arrays == expected and len(arrays) >= 6
