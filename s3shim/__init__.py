"""s3shim: an authenticating, re-signing S3 reverse proxy for non-AWS stores."""

# The only copy of the version: pyproject.toml reads it ([tool.setuptools.dynamic]), and
# `s3shim --version` prints it. A plain literal, so setuptools finds it without importing.
__version__ = "0.1.0"
