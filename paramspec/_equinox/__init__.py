"""The Equinox backend: fans, role inference, re-initialisation and multipliers."""

from ._fans import Layout as Layout
from ._fans import fans as fans
from ._fans import leaf_layout as leaf_layout
from ._multiply import Multiplied as Multiplied
from ._multiply import MultiplierError as MultiplierError
from ._multiply import ScaledFieldAccessError as ScaledFieldAccessError
from ._multiply import block_labels as block_labels
from ._multiply import multiply as multiply
from ._multiply import scaled as scaled
from ._multiply import unwrap as unwrap
from ._reinit import ReinitError as ReinitError
from ._reinit import leaf_key as leaf_key
from ._reinit import reinit as reinit
from ._roles import ROLES as ROLES
from ._roles import LeafInfo as LeafInfo
from ._roles import Role as Role
from ._roles import RoleInferenceError as RoleInferenceError
from ._roles import describe_leaves as describe_leaves
from ._roles import infer_leaves as infer_leaves
from ._roles import leaf_paths as leaf_paths
from ._roles import map_parameters as map_parameters
