"""Pure torch neuron steps: LIF, LIF-refrac and surrogate spike thresholds.

The names, NamedTuple fields and defaults are those of ``norse.torch.functional``.

The argument checks the steps run (``check_dt``, ``check_parameters``,
``check_parameter_type``, ``check_state``, ``check_value`` and the ``VALUE_RULES`` they apply)
are public too: the modules run them once per call instead of once per step.
``register_surrogate`` adds a surrogate family (a new ``method``).
"""

from lifexport.functional._checks import (
    RULES,
    VALUE_RULES,
    check_dt,
    check_parameter_type,
    check_parameters,
    check_state,
    check_value,
    nested_state_class,
)
from lifexport.functional.leaky_integrator import (
    LIParameters,
    LIState,
    li_feed_forward_step,
    li_step,
)
from lifexport.functional.lif import (
    LIFFeedForwardState,
    LIFParameters,
    LIFState,
    lif_feed_forward_step,
    lif_step,
)
from lifexport.functional.lif_refrac import (
    LIFRefracFeedForwardState,
    LIFRefracParameters,
    LIFRefracState,
    compute_refractory_update,
    lif_refrac_feed_forward_step,
    lif_refrac_step,
)
from lifexport.functional.threshold import (
    METHODS,
    SURROGATES,
    Surrogate,
    heaviside,
    methods,
    register_surrogate,
    sign,
    spike,
    threshold,
    unregister_surrogate,
)

__all__ = [
    "RULES",
    "VALUE_RULES",
    "check_dt",
    "check_parameter_type",
    "check_parameters",
    "check_state",
    "check_value",
    "nested_state_class",
    "METHODS",
    "SURROGATES",
    "Surrogate",
    "methods",
    "register_surrogate",
    "spike",
    "unregister_surrogate",
    "LIParameters",
    "LIState",
    "LIFParameters",
    "LIFState",
    "LIFFeedForwardState",
    "LIFRefracParameters",
    "LIFRefracState",
    "LIFRefracFeedForwardState",
    "compute_refractory_update",
    "heaviside",
    "lif_feed_forward_step",
    "lif_refrac_feed_forward_step",
    "lif_refrac_step",
    "li_feed_forward_step",
    "li_step",
    "lif_step",
    "sign",
    "threshold",
]
