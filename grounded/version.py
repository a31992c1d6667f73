"""The version of grounded (read by packaging, the API's OpenAPI document and ``grounded --version``)."""

__version__ = "0.1.0"
