"""The control plane between the controller and the node agents, the same in every mode.

* :mod:`twin.control.plane`: the controller's ML-DSA-65 identity, the nodes' trust bundle and
  the envelope verifier that every command passes before a node acts on it;
* :mod:`twin.control.view`: the controller's picture of the mesh, one report per node, each with
  its own age (never one global consistent copy);
* :mod:`twin.control.overhead`: what healing costs on the air (routing frames, telemetry and
  command bytes per node and second).

How reports and commands travel (out of band, or in band over the mesh itself) is the mode's
business: :mod:`twin.sim.control` models it in the twin.
"""
