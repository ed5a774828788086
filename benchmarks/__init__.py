"""The benchmark suite: our pool side by side with raw websockets and aio-websocket-pool 0.1.0.

Run it with ``bash scripts/dev bench`` (``--quick`` for a run under a minute);
``docs/performance.md`` says what each workload measures and shows the latest
table. The modules, one job each:

* :mod:`benchmarks.echo_server`: the echo server, run in a process of its own.
* :mod:`benchmarks.subjects`: one small adapter per subject (ours, raw, 0.1.0).
* :mod:`benchmarks.workloads`: the workloads, written once against the adapters.
* :mod:`benchmarks.multiplexing`: M1, multiplexed JSON-RPC calls beside a
  hand-written dispatcher and exclusive leases, all three in ours' worker.
* :mod:`benchmarks.worker`: runs workloads for one subject, in that subject's venv.
* :mod:`benchmarks.plan`: which workloads run with which sizes, and their targets.
* :mod:`benchmarks.envs`: the venvs, the interpreters and the machine's description.
* :mod:`benchmarks.runner`: starts the servers and workers and collects the results.
* :mod:`benchmarks.report`: the table, the verdicts and the comparison with a past run.
* :mod:`benchmarks.chart`: the table's ratios as an SVG chart (docs/performance.svg).
* :mod:`benchmarks.hotpath`: cProfile of our acquire + release cycle.
"""
