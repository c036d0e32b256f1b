"""`tradeguard chaos`: thousands of orders under crashes, a broker restart, duplicates, reordering,
poison and funding faults, ending with the books audit (SPEC G2, X6; issue 13).

- :mod:`scripts.chaos.plan`: the seeded fault schedule (pure);
- :mod:`scripts.chaos.orders`: the seeded order mix, one script per branch of the product;
- :mod:`scripts.chaos.faults`: the faults carried out against the running stack;
- :mod:`scripts.chaos.run`: the run, its checks and its report.
"""
