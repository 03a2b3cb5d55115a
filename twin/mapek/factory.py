"""The one place the brain is assembled, from a scenario's :class:`twin.scenario.LoopSpec`.

``sim`` (:mod:`twin.sim.loop`) and ``emu`` (:mod:`twin.emu.bridge`) both call
:func:`build_brain`, so the same settings (warm-up, allowed actions, command budget,
confirmation polls, signing, knowledge file) hold in every mode; before, each mode built its own
controller and they drifted apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twin.control.plane import ControlPlane
from twin.mapek.analyze import Analyzer
from twin.mapek.guard import Guardrails
from twin.mapek.knowledge import KnowledgeBase
from twin.mapek.loop import Controller
from twin.mapek.plan import Planner


@dataclass
class Brain:
    controller: Controller
    plane: ControlPlane | None
    knowledge: KnowledgeBase

    def finish(self) -> None:
        """End of run: this run's incidents join the knowledge file (atomically), if one is kept."""
        self.knowledge.save()


def control_plane(spec, *, attacks: bool = False) -> ControlPlane | None:
    """The controller's identity and the nodes' verifier, when commands are signed (or attacked)."""
    return ControlPlane() if spec.sign or attacks else None


def knowledge_path(spec, source_dir: Path | None) -> Path | None:
    if not spec.knowledge:
        return None
    p = Path(spec.knowledge)
    return p if p.is_absolute() or source_dir is None else source_dir / p


def build_brain(adapter, spec, *, base_interval_s: float = 1.0, plane: ControlPlane | None = None,
                signer=None, source_dir: Path | None = None, run_id: str = "") -> Brain:
    """The MAPE-K controller for ``adapter`` as ``spec`` (a ``LoopSpec``) says.

    ``plane`` signs the commands when ``spec.sign`` (the node side verifies with the same plane);
    ``signer`` overrides it where the controller's identity lives elsewhere (``live``: the lab's
    key, and agents refuse anything unsigned); ``base_interval_s`` is the routing's configured
    OGM/hello period, what bursts restore to.
    """
    kb = KnowledgeBase(knowledge_path(spec, source_dir))
    planner = Planner(allowed=list(spec.actions), knowledge=kb, base_interval_ms=int(round(base_interval_s * 1000)))
    ctl = Controller(adapter, planner=planner, analyzer=Analyzer(warmup_s=spec.warmup),
                     signer=signer if signer is not None else (plane if spec.sign else None), knowledge=kb,
                     run_id=run_id,
                     guard=Guardrails(per_node=spec.budget, confirm=spec.confirm))
    return Brain(ctl, plane, kb)
