"""Switchyard's benchmark suite: a fast fake OpenAI upstream, a coordinated-omission-free load generator, and
runners that start each gateway pinned to a CPU core and measure what it adds over a direct call.

    python -m benchmarks.run [--quick]        # the whole suite; writes benchmarks/results/latest.json and
                                              # regenerates docs/benchmarks.md
    python -m benchmarks.fake_upstream --port 18001 --latency-ms 0
    python -m benchmarks.loadgen --url http://127.0.0.1:18001/v1/chat/completions --rate 500 --duration 10

Modules: ``fake_upstream`` (the upstream; ``fake_compare`` shows why it is a raw server), ``httpclient`` (a raw
HTTP/1.1 keep-alive client), ``loadgen`` (closed- and open-loop load), ``stats`` (percentiles), ``runners``
(targets as pinned subprocesses, /proc accounting), ``phases`` (scenarios, pairing, what the gateway adds),
``run`` (the suite), ``report`` (Markdown and chart), ``pyspy`` (optional profiling).
"""
