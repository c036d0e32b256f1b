"""The operator console (G3 web, S6, the operator's side of A2, A6 and E3): a small Starlette app
that shows any order across every service, the stuck ones, and lets a signed-in operator act.

    tradeguard console                 # against `make run`'s stack (.data); `make run` starts it too

It reads each service's read API (``GET /order`` of the saga, escrow and payment, the account
service's identities and locked accounts, the notification service's undelivered emails) and the
topics (an order's timeline, the dead letters), never a service's database. Actions are operator
commands published on the topics as the ``operator`` producer, each confirmed on a page of its
own, idempotent by an id fixed when its form is drawn, and written to the console's audit log
(who, when, why, what came of it); the command itself is on the order's timeline.

- :mod:`~scripts.console.settings`: where it listens, the operator account, session length;
- :mod:`~scripts.console.auth`: sign-in (argon2 hash), server-side sessions that expire, CSRF tokens;
- :mod:`~scripts.console.reads`: what the pages show, from the read APIs and the topics;
- :mod:`~scripts.console.desk`: the actions: checked, sent, awaited, audited;
- :mod:`~scripts.console.app`: the routes and pages (templates/ and static/ are data).
"""
