"""Bearer-token authentication and authorization of the HTTP API (issue 12).

``tokens`` is the pure part (roles, scopes, the hashed token table, constant-time lookup);
``files`` the imperative part (a tokens file and a secret file re-read when they change, so a
rotation needs no restart). The HTTP middleware that applies them is ``kvnode.http.auth``.
No module here imports aiohttp: the CLI and ``ringkv local`` use them to make tokens.
"""
