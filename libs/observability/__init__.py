"""What operators see of a process: logs (logs.py), on-call metrics (metrics.py), traces
(tracing.py). No service imports; libs.messaging and libs.service_host use it."""
