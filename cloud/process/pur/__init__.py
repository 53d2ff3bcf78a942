"""The PUR foam moulding twin: a 0D model after Baser & Khakhar with mould heat exchange, vents and hardness.

``PurModel`` meets the process-model contract; ``materials`` and
``scenario`` hold the material database and the process settings.
"""

from cloud.process.pur.materials import MaterialSystem, UnknownMaterialError, get_material, material_names
from cloud.process.pur.model import PurModel, Trajectory, simulate
from cloud.process.pur.scenario import PurScenario, builtin_scenarios, load_scenarios

__all__ = ["MaterialSystem", "PurModel", "PurScenario", "Trajectory", "UnknownMaterialError", "builtin_scenarios",
           "get_material", "load_scenarios", "material_names", "simulate"]
