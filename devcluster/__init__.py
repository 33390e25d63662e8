"""The local development and test cluster, outside the installed package.

``services``: a Ray head, worker nodes in private mount namespaces, an MLflow server and an
S3-compatible store (moto), all on 127.0.0.1 and started and stopped by the calling process.
``pipeline``: the README's quick start, phases 1-4 submitted to such a cluster.

Run from the checkout (``python -m devcluster.pipeline``); the tests import it from there.
A real cluster needs none of this: its jobs are ``ray_jobs/`` modules given to ``ray job submit``.
"""
