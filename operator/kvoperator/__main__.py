"""``python -m kvoperator`` / ``ringkv-operator``: settings -> clients -> kopf, wiring only."""

from __future__ import annotations

import logging
import os

import kopf
import prometheus_client

from kvoperator import handlers, kube
from kvoperator.metrics import OperatorMetrics
from kvoperator.nodes import HttpNodeApi
from kvoperator.settings import OperatorSettings

log = logging.getLogger("kvoperator")


def main() -> None:
    settings = OperatorSettings.from_env(os.environ)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    kube.load_config()
    shared = handlers.Shared(
        settings=settings,
        kube=kube.KubernetesApi(timeout_s=settings.kube_timeout_s),
        nodes=HttpNodeApi(timeout_s=settings.node_timeout_s),
        metrics=OperatorMetrics(prometheus_client.REGISTRY),
    )
    host = settings.bind_host
    health = f"http://{host}:{settings.health_port}/healthz" if settings.health_port else None
    log.info(
        "ringkv operator starting: namespaces %s, default image %s",
        ",".join(settings.namespaces) or "(all)",
        settings.default_image,
    )
    kopf.run(
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=health,
        memo=kopf.Memo(shared=shared),
    )


if __name__ == "__main__":
    main()
