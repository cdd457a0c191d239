"""`servestack bench`: a load generator for any OpenAI-compatible server.

workload   datasets (random, shared-prefix, multi-turn, JSONL), deterministic for a seed
client     one request → one Sample (TTFT, inter-token gaps, usage-based token counts)
loadgen    closed loop at a concurrency, or Poisson arrivals at a rate
stats      percentiles, distributions, throughput, goodput
runner     a sweep of load levels on one connection pool
report     rich tables and the JSON document; plot: latency against load (matplotlib)
"""

from servestack.bench.client import Sample, Target
from servestack.bench.loadgen import Concurrency, Limits, Rate
from servestack.bench.runner import api_base, detect_model, run_levels
from servestack.bench.stats import Distribution, Slo, Summary, percentile, summarize
from servestack.bench.workload import Workload, build_workload

__all__ = [
    "Concurrency",
    "Distribution",
    "Limits",
    "Rate",
    "Sample",
    "Slo",
    "Summary",
    "Target",
    "Workload",
    "api_base",
    "build_workload",
    "detect_model",
    "percentile",
    "run_levels",
    "summarize",
]
