"""Hosts one service process: settings, start-up (migrations, topics, relay, subscribers),
HTTP health and metrics, graceful shutdown. Each service gives a ``ServiceDefinition``."""

from libs.service_host.host import HostSettings, Runtime, ServiceDefinition, build_app, run_service

__all__ = ["HostSettings", "Runtime", "ServiceDefinition", "build_app", "run_service"]
