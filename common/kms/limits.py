"""The simulated KMS's server limits, apart from the server so the command line can show them cheaply.

Importing this module loads nothing else (the server itself needs botocore, the ``kms-sim`` extra).
"""

# The largest legal GenerateRandom request is a 262144-byte document in base64 (349528 characters) plus a few
# hundred bytes of JSON; the cap leaves room for that and refuses anything much larger before reading it.
DEFAULT_MAX_BODY_BYTES = 512 * 1024
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_SOCKET_TIMEOUT = 20.0
BODY_DEADLINE = 30.0
