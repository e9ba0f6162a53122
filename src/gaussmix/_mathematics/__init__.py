"""Layer 2, mixture mathematics on arrays: ``Params``, the numpy E-step (fast and exact
forms), the M-steps (maximum likelihood and variational) and the algebra of a mixture
(marginals, conditioning, conditional moments) as pure functions. Imports only layer 1."""
