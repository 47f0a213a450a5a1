"""The HDF5 superblock's checksum (fuel_datasets.superblock)."""

from fuel_datasets.superblock import lookup3


def test_superblock_checksum_is_lookup3():
    # Test vectors from lookup3.c's driver5().
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago") == 0x17770551
    assert lookup3(b"", 0xDEADBEEF) == 0xBD5B7DDE
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161
