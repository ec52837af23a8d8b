"""s3shim: an authenticating, re-signing S3 reverse proxy for non-AWS stores."""

__version__ = "0.1.0"
