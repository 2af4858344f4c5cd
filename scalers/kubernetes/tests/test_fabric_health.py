# SPDX-License-Identifier: MIT
"""The Fabric answers grpc.health.v1.Health/Check with SERVING, which the StatefulSet's gRPC
readiness and liveness probes ask (deploy/kubernetes/base/fabric.yaml)."""

from __future__ import annotations

import grpc


def test_fabric_serves_grpc_health(fabric):
    with grpc.insecure_channel(fabric.address) as channel:
        # HealthCheckRequest{service: ""} is empty on the wire; the answer is
        # HealthCheckResponse{status: SERVING (1)}: field 1, varint 1.
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        assert check(b"", timeout=10) == b"\x08\x01"
