"""meshtwin: simulation twin, emulation and live harness for self-healing batman-adv meshes."""

__version__ = "0.1.0"
