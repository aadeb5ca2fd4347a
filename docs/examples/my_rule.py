"""TD-ANP whose eligibility pairs the twins' *rate* difference r̃ − r (not h̃ − h) with the
presynaptic rate: each unit's credit is weighted by its slope tanh'(h)."""

from bioperturb import register_rule
from bioperturb.rules.td_anp import TDANP


@register_rule
class RateANP(TDANP):
    name = "rate_anp"
    meta = {"description": "TD-ANP with the rate difference r_n - r as the perturbation"}
    PRODUCTS = {
        **TDANP.PRODUCTS,
        "W_rec": "nrm_post * (r_n_post - r_post) * r_prev_pre",
        "W_in": "nrm_post * (r_n_post - r_post) * u_prev_pre",
    }
