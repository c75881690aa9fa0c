"""Cryptography: the master key and its password-wrapped key files, keyed IDs, and AEAD.

A *master key* holds three secrets: the encryption key, the ID key (keyed BLAKE3 blob IDs)
and the chunker seed. A *key file* wraps the master key under a key derived from a
password with Argon2id (scrypt in older key files). *Blobs* and *documents* are sealed with
AES-256-GCM under subkeys derived from the encryption key, so no key ever encrypts two
different plaintexts with a repeated nonce.

Import from the modules (`aead`, `keys`, `kdf`): this package imports nothing itself, so
that the CLI can start the key derivation (`kdf`) before anything heavier is loaded.
"""
