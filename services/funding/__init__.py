"""The funding network simulator (SPEC A4, "Funding networks"): a simulated card issuer and bank.

It starts with its vault: the client app hands a card number or an IBAN to the vault over HTTP
(``POST /v1/tokens/cards``, ``POST /v1/tokens/bank-accounts``) and gets back a token, the brand
and the last four digits. Only those ever cross Kafka or get stored by the other services; the
vault itself keeps a keyed fingerprint, never the number.

- :mod:`services.funding.cards`: the rules (Luhn, brands, expiry, IBAN) and the scripted test cards;
- :mod:`services.funding.vault`: the token table in SQLite;
- :mod:`services.funding.app`: the HTTP API; ``python -m services.funding`` serves it;
- :mod:`services.funding.client`: the async client the other services use.
"""
