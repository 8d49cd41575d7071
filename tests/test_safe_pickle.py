"""The safe unpickler: numpy arrays load (every protocol), anything that names another global is refused."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from vgs_cli.data.safe_pickle import UnsafePickleError, load_array, safe_loads
from vgs_cli.errors import DataError


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_arrays_round_trip_every_protocol(protocol, dtype):
    arr = (np.arange(215 * 7).reshape(215, 7) * 0.5).astype(dtype)
    out = safe_loads(pickle.dumps(arr, protocol=protocol))
    assert isinstance(out, np.ndarray) and out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)


def test_fortran_order_and_views_load():
    arr = np.asfortranarray(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    np.testing.assert_array_equal(safe_loads(pickle.dumps(arr, protocol=5)), arr)
    np.testing.assert_array_equal(safe_loads(pickle.dumps(arr[:, 1], protocol=2)), arr[:, 1])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_reduce_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker))
    with pytest.raises(UnsafePickleError, match=r"refused to unpickle global (posix|os|nt)\.system"):
        safe_loads(payload)
    assert not marker.exists()
    # Control: the stock unpickler really would run it, so the test above is meaningful.
    pickle.loads(payload)
    assert marker.exists()


def test_malicious_inside_container_next_to_array_is_refused(tmp_path):
    marker = tmp_path / "pwned2"
    payload = pickle.dumps([np.zeros(3, np.float32), _Evil(marker)])
    with pytest.raises(UnsafePickleError):
        safe_loads(payload)
    assert not marker.exists()


def test_codecs_encode_only_admits_latin1():
    # Hand-written protocol-0 pickle: _codecs.encode('x', 'rot13') -- an allowed global misused.
    payload = b"c_codecs\nencode\n(Vx\nVrot13\ntR."
    with pytest.raises(UnsafePickleError, match="latin1"):
        safe_loads(payload)


def test_load_array_file_checks(tmp_path):
    good = tmp_path / "good.pkl"
    arr = np.ones((214, 4), np.float32)
    good.write_bytes(pickle.dumps(arr))
    np.testing.assert_array_equal(load_array(good), arr)

    obj = tmp_path / "obj.pkl"
    obj.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(DataError, match="expected a numpy array"):
        load_array(obj)

    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(DataError, match="not a readable pickle"):
        load_array(garbage)

    with pytest.raises(DataError, match="cannot read"):
        load_array(tmp_path / "missing.pkl")


def test_reference_feature_pickle_loads(reference_dir):
    path = sorted((reference_dir / "vas" / "resnet50").glob("*/*.pkl"))[0]
    arr = load_array(path)
    with open(path, "rb") as f:
        expected = pickle.load(f)  # trusted shared reference file: the stock loader is the oracle here
    assert arr.dtype == np.float32 and arr.shape[1] == 2048
    np.testing.assert_array_equal(arr, expected)
