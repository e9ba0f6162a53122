"""Layer 5, the fit: initialisation, the plan, the EM loop every input shares, the hand-over
to the kernels once they are compiled (and the warm-up that compiles them), and scoring."""
