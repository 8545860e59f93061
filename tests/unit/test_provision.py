import struct

import numpy as np
import pytest

from teacher.provision import ProvisionError, dequantize_q4_0, read_e5_image


def test_q4_0_block_layout():
    scale = np.float16(0.5)
    nibbles = bytes((j % 16) | ((15 - j % 16) << 4) for j in range(16))  # low: weight j, high: weight j+16
    block = struct.pack("<e", scale) + nibbles
    values = dequantize_q4_0(block + block, 64)
    expected_low = [(j % 16 - 8) * 0.5 for j in range(16)]
    expected_high = [((15 - j % 16) - 8) * 0.5 for j in range(16)]
    np.testing.assert_array_equal(values[:32], expected_low + expected_high)
    np.testing.assert_array_equal(values[32:], values[:32])


def test_bad_image_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ProvisionError, match="bad magic"):
        read_e5_image(bad)
