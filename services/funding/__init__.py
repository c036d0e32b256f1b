"""The funding network simulator (SPEC A4, P1, P4, P6, "Funding networks"): a simulated card issuer and bank.

It starts with its vault: the client app hands a card number or an IBAN to the vault over HTTP
(``POST /v1/tokens/cards``, ``POST /v1/tokens/bank-accounts``) and gets back a token, the brand
and the last four digits. Only those ever cross Kafka or get stored by the other services; the
vault itself keeps a keyed fingerprint, never the number.

Then the network itself: charges, refunds and status inquiries on those tokens, idempotent by
the caller's request id, with the faults a real network has (declines, an issuer away, a timed-out
request, a lost answer, latency), scripted per card and drawn per run from a seed.

- :mod:`services.funding.cards`: the rules (Luhn, brands, expiry, IBAN) and the scripted test cards;
- :mod:`services.funding.vault`: the token table in SQLite;
- :mod:`services.funding.faults`: the fault plan and how each card's charges are answered (pure);
- :mod:`services.funding.book`: the network's own book of charges and refunds (same SQLite file);
- :mod:`services.funding.issuer`: the charge, refund, inquiry and ledger endpoints;
- :mod:`services.funding.app`: the HTTP API; ``python -m services.funding`` serves it;
- :mod:`services.funding.client`: the vault's async client. The payment service reaches the
  network through its own port, :mod:`services.payment.network`.
"""
