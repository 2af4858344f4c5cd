# SPDX-License-Identifier: MIT
"""The Kubernetes scaler of Perper: one pod per live instance of the per-instance agent types,
and the replicas of each pooled agent type's Deployment set from the work waiting for it.

It is a client of the Fabric like any agent process (the Python SDK's FabricConnection): every
live instance is an execution of the agent `Registry` (ID = instance ID, `instance` field =
agent type), so it listens to `Registry`. See docs/kubernetes.md.
"""
