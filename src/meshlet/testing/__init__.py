"""Test helpers shipped with meshlet, for meshlet's own tests and for users' tests.

- :class:`meshlet.testing.certs.CertificateFactory`: a throwaway mesh CA that writes
  certificate, key and CA files for any identity.
"""
