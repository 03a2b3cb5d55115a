"""Live mode: the node agent, its channel, the LiveAdapter and the lab's operator commands.

``agent`` (+ ``agent_config``, ``kernel``, ``safety``, ``audit``, ``probe``, ``ygg``,
``agent_metrics``) runs on a lab node; ``wire`` and ``client`` are the channel; ``adapter`` and
``runner`` are the controller's side of a run; ``inventory``, ``keys``, ``deploy``, ``ops`` and
``cli`` are the lab kit; ``loopback`` and ``standin`` build labs for tests and benchmarks. The
runbook is ``live/README.md``.
"""
