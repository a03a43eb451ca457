"""The wire between envs and the simulator server: one package both sides import (env -> wire <- server).

- ``protocol``: the message codec (msgpack with raw array payloads; never pickle) and the error codes;
- ``requests``: what a request may carry (``SceneSpec``, limits) and the checks the server applies;
- ``addresses``: which addresses may be bound, and CURVE keys;
- ``client``: ``SimulatorClient``, the typed client envs (and any program) use to talk to a server or broker.
"""
