"""A TradeGuard sandbox (issue 20): a whole stack in test mode for a marketplace's own tests.

``tradeguard sandbox`` starts a broker of its own (own data folder, free ports), every service and
simulator as processes (SQLite, cheap password hashing), and the test helpers
(:mod:`scripts.sandbox.control`), then writes a connection profile (``tradeguard_client``'s
``ConnectionProfile``: the marketplace principal's credentials and key file, the sealing key,
``control_url``) and prints one JSON line, ``{"ready": "<profile>", ...}``. It runs until SIGINT
or SIGTERM, or, with ``--stop-on-stdin-eof``, until its standard input closes: the pytest plugin
holds that pipe, so a test run that dies, however it dies, takes its sandbox with it.
"""
