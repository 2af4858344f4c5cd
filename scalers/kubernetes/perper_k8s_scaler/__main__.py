# SPDX-License-Identifier: MIT
"""python3 -m perper_k8s_scaler --config scaler.yaml: runs the Kubernetes scaler until SIGTERM
or SIGINT. Exit codes: 0 after a signal, 2 for a bad configuration or command line, 1 when
Kubernetes cannot be reached at all (no configuration for the client)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time

from perper.connection import FabricConnection

from perper_k8s_scaler import kube as kube_module
from perper_k8s_scaler.config import DEFAULT_FABRIC, ConfigError, load
from perper_k8s_scaler.scaler import Scaler, log

CONFIG_VARIABLE = "PERPER_K8S_SCALER_CONFIG"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "error": logging.ERROR}


class _Formatter(logging.Formatter):
    """The project's log line: local time, level letter, component, message (IDs first)."""

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        text = f"{when}.{int(record.msecs):03d} {record.levelname[0]} k8s-scaler: " \
               f"{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="perper-k8s-scaler",
        description="The Kubernetes scaler of Perper: watches the Fabric's Registry and keeps "
                    "one pod per live instance of each per-instance agent type, and sets the "
                    "replicas of each pooled agent type's Deployment from its pending "
                    "executions (docs/kubernetes.md).")
    parser.add_argument("--config", default=os.environ.get(CONFIG_VARIABLE),
                        help=f"the scaler's YAML configuration [env {CONFIG_VARIABLE}]")
    parser.add_argument("--fabric", help="the Fabric's address, host:port [default: the "
                        "config's fabric, else PERPER_FABRIC_ENDPOINT, else "
                        f"{DEFAULT_FABRIC}]")
    parser.add_argument("--namespace", help="where pods are created and Deployments scaled "
                        "[default: the config's namespace, else the pod's own, else the "
                        "kubeconfig context's, else default]")
    parser.add_argument("--kubeconfig", help="kubeconfig file [default: KUBECONFIG; in a "
                        "cluster, the pod's service account]")
    parser.add_argument("--log-level", choices=sorted(_LEVELS), default="info")
    arguments = parser.parse_args(argv)
    if not arguments.config:
        parser.error(f"--config is required (or set {CONFIG_VARIABLE})")
    return arguments


async def _run(scaler: Scaler, connection: FabricConnection) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    task = asyncio.create_task(scaler.run())
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    stopper.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await connection.close()


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    log.setLevel(_LEVELS[arguments.log_level])
    log.propagate = False
    try:
        config = load(arguments.config)
    except ConfigError as e:
        print(f"perper-k8s-scaler: {e}", file=sys.stderr)
        return 2
    try:
        kube_module.load_client_configuration(arguments.kubeconfig)
    except Exception as e:  # the client's own errors: no file, no cluster
        print(f"perper-k8s-scaler: no Kubernetes client configuration: {e}", file=sys.stderr)
        return 1
    namespace = arguments.namespace or config.namespace or kube_module.default_namespace(
        arguments.kubeconfig or os.environ.get("KUBECONFIG"))
    fabric = arguments.fabric or config.fabric or os.environ.get("PERPER_FABRIC_ENDPOINT") \
        or DEFAULT_FABRIC

    async def start() -> None:
        connection = FabricConnection(fabric, start_index=0)
        scaler = Scaler(config, kube_module.Kube(namespace), connection,
                        config.pod_fabric_endpoint or fabric)
        log.info("started: Fabric %s, namespace %s, %d per-instance, %d pooled and %d "
                 "external agent types", fabric, namespace, len(config.instance_agents()),
                 len(config.pool_agents()), len(config.external))
        await _run(scaler, connection)

    try:
        asyncio.run(start())
    except ValueError as e:  # an unusable Fabric address
        print(f"perper-k8s-scaler: {e}", file=sys.stderr)
        return 2
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
