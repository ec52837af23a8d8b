"""Test, benchmark and demo support: real stores, the s3shim process, clients, taps.

Imported by tests/, bench/ and scripts/; never by s3shim and never shipped with it.
"""
