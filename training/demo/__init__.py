"""The headless demo of the loop, apart from the product: simulated labelers with a visible
preference (`rules`) and people's inconsistency (`labelers`), the demo file's held-out split
(`split`), and the round's simulation and evaluation (`headless`), used by
`manage.py run_demo_round`, `bench/bench_round.py` and the tests."""
