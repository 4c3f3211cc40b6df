"""Live rebalancing: drive a migration plan (``kvnode.core.plan``) against running nodes.

``admin`` declares what the executor needs from nodes (``NodeAdmin``); ``http_admin`` implements
it over the node admin HTTP API; ``executor`` runs, persists, resumes and aborts a plan. The
operator and ``ringkv local scale`` both drive this package.
"""
