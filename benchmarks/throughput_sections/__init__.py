"""The sections of benchmarks/throughput.py, one module each (the script runs them in
order); `common` and `state` are what they share."""
