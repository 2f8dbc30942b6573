"""Plain PyTorch training loops for the end-to-end step benchmark (issue 9, item 3):
fastgan's trainer step is measured against them in benchmarks/step_e2e.py.

    eager-public    (a) public.EagerPublic: the way common public implementations write it
    eager-careful   (b) careful.EagerCareful: the best plain PyTorch a careful user writes
    eager-careful-graphs  careful.CarefulGraphed: (b) replayed from CUDA graphs (CUDA only)
    compile         (c) careful.Compiled: (b) with torch.compile where it compiles

All of them build the same networks as fastgan's models (fastgan's classes with fused=False:
stock nn modules), take the models' paper defaults and read their batches from a
device-resident loader (data.DeviceLoader), so the comparison is of the step alone.
"""
from .careful import CarefulGraphed, Compiled, EagerCareful
from .common import KIND, PlainLoop, StepSpec
from .data import DeviceLoader
from .public import EagerPublic

#: name -> loop class, in the report's order
LOOPS = {cls.name: cls for cls in (EagerPublic, EagerCareful, CarefulGraphed, Compiled)}

__all__ = ["LOOPS", "KIND", "CarefulGraphed", "Compiled", "DeviceLoader", "EagerCareful", "EagerPublic", "PlainLoop",
           "StepSpec"]
