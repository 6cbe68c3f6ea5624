"""The simulated KMS's server limits, apart from the server so the command line can show them cheaply.

Importing this module loads nothing else (the server itself needs botocore, the ``kms-sim`` extra).
"""

# The largest legal GenerateRandom request is a 262144-byte document in base64 (349528 characters) plus a few
# hundred bytes of JSON; the cap leaves room for that and refuses anything much larger before reading it.
DEFAULT_MAX_BODY_BYTES = 512 * 1024
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_SOCKET_TIMEOUT = 20.0
# One deadline for reading a whole request (request line, headers and body), from the moment the server
# starts waiting for it: a client dripping a byte at a time holds a connection slot no longer than this.
REQUEST_DEADLINE = 30.0
