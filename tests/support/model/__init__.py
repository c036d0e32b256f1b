"""G2/X6: the money model, a whole TradeGuard of several orders in one process, without Kafka.

The saga's, payment's, escrow's and account's real handlers (services/*/handlers, over their
pure domains) exchange the real contract records through an in-memory wire whose every
delivery the caller chooses: the hypothesis state machine in tests/unit/test_money_model.py.

- :mod:`~tests.support.model.wire`: records, stores through the aggregates' row mappings, the
  consumer (inbox, keyed repeats, refusals answered with ``CommandRejected``);
- :mod:`~tests.support.model.network`: the funding network's book and its faults;
- :mod:`~tests.support.model.system`: the services, the worker, the sweeper, people, settling;
- :mod:`~tests.support.model.poison`: foreign records, each refused without effect;
- :mod:`~tests.support.model.books`: the invariants, at every instant and once settled.
"""
